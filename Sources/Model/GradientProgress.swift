/// Told during `Network.backward` how far the parameter gradients are final, so gradient
/// communication can start before backward ends (overlapped allreduce).
///
/// Parameters live in the flat store in layer order and backward visits layers in reverse, so
/// "final" is a watermark that only moves down: after a call with `offset`, every gradient at
/// store offsets `offset..<count` holds its value for this backward pass. The network calls
/// `backwardProgress` after every top-level layer and after every sub-layer of a `Sequential`
/// reached through `Sequential`s only (inside other composites the order is theirs);
/// `offset` is nil after a layer without parameters (a chance to poll communication).
/// Implementations must not allocate or block for long: they run between layers of the step.
public protocol GradientProgressObserver: AnyObject {
    func backwardProgress(finalFrom offset: Int?)
}
