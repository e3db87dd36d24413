import ArgumentParser
struct ImportIDXCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import-idx", abstract: "placeholder")
}
