/// Where early stopping and the best-K checkpoint ranking stand; saved in every checkpoint so a
/// resumed run continues with the same counters and the same ranked files.
public struct RunControlState: Codable, Equatable, Sendable {
    /// The monitored metric (a history key such as "val_acc", "val_loss", "val_macro_f1").
    public var monitor: String
    /// Best monitored value so far and the epoch (1-based) that reached it.
    public var best: Double?
    public var bestEpoch = 0
    /// Early stopping: the value improvements are measured against (moves only by more than
    /// min delta), and complete epochs since it last moved.
    public var reference: Double?
    public var badEpochs = 0
    /// True once early stopping ended the run.
    public var stopped = false
    /// The kept best checkpoints, best first.
    public var ranked: [Entry] = []

    public struct Entry: Codable, Equatable, Sendable {
        public var epoch: Int
        public var value: Double
        public var file: String
        public init(epoch: Int, value: Double, file: String) { self.epoch = epoch; self.value = value; self.file = file }
    }

    public init(monitor: String) { self.monitor = monitor }
}
