/// The shape of one sample's activation: channels × height × width.
///
/// A batch of activations is `batch` consecutive samples. The in-memory order of one sample is
/// the layout the network's convolution backend chose; the portable im2col backend uses planar
/// NCHW (`channels` planes of `height × width`). Layers that do not care about spatial layout
/// (Linear, loss) only see `count`.
public struct FeatureShape: Equatable, Hashable, Codable, Sendable, CustomStringConvertible {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels; self.height = height; self.width = width
    }

    /// A flat vector of `count` features (height = width = 1).
    public init(features: Int) { self.init(channels: features, height: 1, width: 1) }

    /// Elements per sample.
    public var count: Int { channels * height * width }
    /// Elements per channel plane.
    public var plane: Int { height * width }

    public var description: String { "\(channels)×\(height)×\(width)" }
}
