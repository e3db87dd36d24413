/// Errors raised while building, loading or checking a model.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unknownArchitecture(String, known: [String])
    case invalidShape(layer: String, input: FeatureShape, reason: String)
    case invalidOption(String)
    case checkpoint(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownArchitecture(name, known):
            return "unknown model '\(name)' (known: \(known.joined(separator: ", ")))"
        case let .invalidShape(layer, input, reason):
            return "\(layer): cannot take input \(input): \(reason)"
        case let .invalidOption(message):
            return message
        case let .checkpoint(path, reason):
            return "\(path): \(reason)"
        }
    }
}
