// swift-tools-version: 6.1
// Benchmarks of ZeroCopyReactor side by side with SwiftNIO, in their own package so that the library never
// depends on what it is compared against. `tools/bench` (at the repository root) runs everything.
import PackageDescription

let package = Package(
    name: "ZeroCopyReactorBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ZeroCopyReactor", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        // ordo-one/benchmark, formerly package-benchmark (that URL and identity are deprecated); 1.38.1 is the first
        // release whose plugin knows the identity "benchmark". Only the MallocInterposer trait (the malloc counts the
        // thresholds check): the default RuntimeInterposer trait would bring in swift-runtime-interposer on Linux.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // Counting malloc hooks (off until a scenario turns them on) and the peak-RSS reset.
        .target(name: "CBenchSupport"),
        // The side-by-side scenarios: each one on ZeroCopyReactor and on NIOPosix, alternating, run after run.
        .executableTarget(
            name: "SideBySide",
            dependencies: [
                "CBenchSupport",
                .product(name: "ZeroCopyReactor", package: "ZeroCopyReactor"),
                .product(name: "ChildProcess", package: "ZeroCopyReactor"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // The NIO load client records latencies as zcr load does.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // Micro-benchmarks of the write chain alone (ordo-one/benchmark, thresholds in Thresholds/).
        .executableTarget(
            name: "WriteChainBenchmarks",
            dependencies: [
                .product(name: "ZeroCopyReactor", package: "ZeroCopyReactor"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/WriteChain",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
