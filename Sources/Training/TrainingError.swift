/// Errors of a training, evaluation or benchmark run.
public enum TrainingError: Error, CustomStringConvertible {
    /// The coordinator (rank 0) failed while preparing data; it reports the cause itself.
    case coordinatorFailed(String)
    case invalidOption(String)
    case badSample(String)
    case io(String)
    /// More samples failed than allowed; raised on every rank of the job at once.
    case tooManyFailures(String)

    public var description: String {
        switch self {
        case let .coordinatorFailed(m): return m
        case let .invalidOption(m): return m
        case let .badSample(m): return m
        case let .io(m): return m
        case let .tooManyFailures(m): return m
        }
    }
}
