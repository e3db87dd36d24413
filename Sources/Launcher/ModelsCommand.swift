import ArgumentParser
import Model

/// `distrainer models`: the architectures this build knows, with their sizes.
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List every architecture with its parameter count for a class count.",
        discussion: """
        Counts are trainable parameters, as torchvision reports them (BatchNorm running
        statistics are listed apart). With --classes 1000 the torchvision architectures match
        torchvision exactly: resnet18 11,689,512; resnet34 21,797,672; resnet50 25,557,032;
        mobilenetv2 3,504,872; efficientnet-b0 5,288,548. Nothing is allocated.
        """)

    @Option(help: "Classes of the final layer.") var classes = 1000
    @Option(help: "Input channels.") var channels = 3
    @Option(help: "Input height and width (for the multiply-add count; the parameter count does not depend on it).")
    var imageSize = 224
    @Option(parsing: .upToNextOption, help: "Hidden widths of a classifier head MLP (e.g. --head 512 256).")
    var head: [Int] = []

    func run() throws {
        print("architecture       parameters     state  tensors   MMACs/img  (\(channels)×\(imageSize)×\(imageSize), \(classes) classes)")
        for name in Architectures.names {
            let spec = ModelSpec(architecture: name, channels: channels, imageSize: imageSize, classes: classes,
                                 head: head.isEmpty ? nil : head)
            do {
                let s = try Architectures.summary(spec)
                print(pad(name, 16, left: true) + pad(grouped(s.parameters), 13) + pad(grouped(s.state), 10)
                      + pad(String(s.tensors), 9) + pad(String(format1(Double(s.macsPerSample) / 1e6)), 12))
            } catch {
                print(pad(name, 16, left: true) + "  not buildable here: \(error)")
            }
        }
    }

    private func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }

    private func format1(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? s + fill : fill + s
    }
}
