// The `zcr` command: one subcommand per file in this folder.
import ArgumentParser

@main
struct Zcr: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zcr",
        abstract: "ZeroCopyReactor: serve, load-test and profile TCP traffic without copying bytes.",
        subcommands: [Serve.self, Load.self, Profile.self, Demo.self]
    )
}
