// swift-tools-version: 6.2
// Examples of embedding ZeroCopyReactor, as an outside package would: it depends on the library by path.
import PackageDescription

let package = Package(
    name: "ZeroCopyReactorExamples",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ZeroCopyReactor", path: ".."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        .target(name: "FanOut", dependencies: [.product(name: "ZeroCopyReactor", package: "ZeroCopyReactor")]),
        .target(name: "FileServer", dependencies: [.product(name: "ZeroCopyReactor", package: "ZeroCopyReactor")]),
        .target(name: "Proxy", dependencies: [.product(name: "ZeroCopyReactor", package: "ZeroCopyReactor")]),
        .target(name: "KeyValue", dependencies: [.product(name: "ZeroCopyReactor", package: "ZeroCopyReactor")]),
        .executableTarget(
            name: "fanout-server",
            dependencies: ["FanOut", .product(name: "ZeroCopyProfiler", package: "ZeroCopyReactor")]),
        .executableTarget(
            name: "file-server",
            dependencies: ["FileServer", .product(name: "ZeroCopyProfiler", package: "ZeroCopyReactor")]),
        .executableTarget(
            name: "proxy",
            dependencies: ["Proxy", .product(name: "ZeroCopyProfiler", package: "ZeroCopyReactor")]),
        .executableTarget(name: "kv-server", dependencies: [
            "KeyValue", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "ExamplesTests", dependencies: [
            "FanOut", "FileServer", "Proxy", "KeyValue", .product(name: "ZeroCopyReactor", package: "ZeroCopyReactor"),
        ]),
    ]
)
