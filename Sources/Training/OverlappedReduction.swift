import Dist
import Model

/// Connects backward to the gradient allreduce: the network reports how far its gradients are
/// final (`GradientProgressObserver`) and the reducer starts every bucket that is complete, so
/// the allreduce of the last layers runs while the first layers still compute. Armed only for
/// the last micro-batch of a step (`arm`), completed before the gradients are read (`finish`).
final class OverlappedReduction: GradientProgressObserver {
    let reducer: BucketedAllreduce
    let gradients: UnsafeMutablePointer<Float>
    /// The first MPI error met inside backward (which cannot throw); `finish` rethrows it.
    private var failure: Error?

    init(reducer: BucketedAllreduce, network: Network) {
        self.reducer = reducer
        gradients = network.store.gradients
        network.gradientObserver = self
    }

    /// The next backward is the step's last: start buckets as they complete.
    func arm() { reducer.beginOverlap(gradients) }

    func backwardProgress(finalFrom offset: Int?) {
        guard reducer.isOverlapping, failure == nil else { return }
        do { try reducer.gradientsFinal(from: offset ?? Int.max) } catch { failure = error }
    }

    /// Starts the remaining buckets and waits for all: the gradients are then the global sums.
    func finish() throws {
        if let failure {
            self.failure = nil
            try? reducer.finishOverlap()
            throw failure
        }
        try reducer.finishOverlap()
    }
}
