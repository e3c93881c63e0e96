// swift-tools-version: 6.2
import PackageDescription

// `zcr` uses jemalloc as its allocator so that `zcr profile` can read exact per-thread statistics.
// ThreadSanitizer replaces malloc too, so sanitizer builds set ZCR_JEMALLOC=0 (see tools/test).
let linkJemalloc = Context.environment["ZCR_JEMALLOC"] != "0"
// zcr carries the memcpy counter (its memcpy and memmove interpose on the whole process). Sanitizer builds
// (ZCR_JEMALLOC=0) leave it out: it would replace the sanitizer's own memcpy interceptor.
let linkMemcpyCounter = linkJemalloc

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ZeroCopyReactor",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ZeroCopyReactor", targets: ["ZeroCopyReactor"]),
        .library(name: "ZeroCopyReactorNIO", targets: ["ZeroCopyReactorNIO"]),
        .library(name: "ZeroCopyProfiler", targets: ["ZeroCopyProfiler"]),
        .library(name: "ZeroCopyLoad", targets: ["ZeroCopyLoad"]),
        .executable(name: "zcr", targets: ["zcr"]),
        // Child processes with deadlines, for this package's tests and its Benchmarks package (not for embedding).
        .library(name: "ChildProcess", targets: ["ChildProcess"]),
        // The memcpy counter as a shared object for LD_PRELOAD into any server (docs/profile.md).
        .library(name: "ZeroCopyMemcpyCounter", type: .dynamic, targets: ["CZeroCopyMemcpyCounter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Only for the optional ZeroCopyReactorNIO interop product (NIOCore); the core never depends on it.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        // `swift package generate-documentation` for the DocC catalog (tools/docs).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // The only C in the project: epoll/eventfd/sendmsg declarations Swift cannot import cleanly,
        // one thread-local slot, and the run-time lookup of jemalloc's mallctl.
        .target(name: "CZeroCopyShims"),
        // zlib, linked as a system library: HdrHistogram logs deflate every histogram (ZeroCopyLoad).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        // memcpy and memmove that count bytes per thread (calls of 512 B or more), forwarding to the C library's.
        // Linked into zcr only; other servers preload the ZeroCopyMemcpyCounter product. Nothing else depends on it.
        .target(name: "CZeroCopyMemcpyCounter"),
        .target(
            name: "ZeroCopyReactor",
            dependencies: [
                "CZeroCopyShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // SwiftNIO interop: a ByteBuffer becomes a Slice without copying. Depends on NIOCore only.
        .target(
            name: "ZeroCopyReactorNIO",
            dependencies: ["ZeroCopyReactor", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // Text shared by the tools: fixed decimals and JSON string escaping, without Foundation.
        .target(name: "ZeroCopyText", swiftSettings: strict),
        // Child processes for the tests and the benchmarks: posix_spawn, close-on-exec pipes, a deadline on every wait.
        .target(name: "ChildProcess", dependencies: ["CZeroCopyShims"], swiftSettings: strict),
        // Threads, waits and running zcr, shared by the test targets.
        .target(name: "TestSupport", dependencies: ["ChildProcess"], path: "Tests/TestSupport", swiftSettings: strict),
        // The allocation profiler behind `zcr profile`: jemalloc statistics, scenarios, JSON and HTML reports.
        .target(
            name: "ZeroCopyProfiler",
            dependencies: ["ZeroCopyReactor", "CZeroCopyShims", "ZeroCopyText"],
            swiftSettings: strict
        ),
        // The load generator behind `zcr load`: many connections, open and closed loop, HdrHistogram latencies.
        .target(
            name: "ZeroCopyLoad",
            dependencies: [
                "ZeroCopyReactor", "ZeroCopyText", "CZlib",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zcr",
            dependencies: [
                "ZeroCopyReactor", "ZeroCopyProfiler", "ZeroCopyLoad", "ZeroCopyText",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ] + (linkMemcpyCounter ? ["CZeroCopyMemcpyCounter"] : []),
            swiftSettings: strict + (linkMemcpyCounter ? [.define("ZCR_MEMCPY_COUNTER")] : []),
            linkerSettings: linkJemalloc ? [.linkedLibrary("jemalloc")] : []
        ),
        .testTarget(
            name: "ZeroCopyReactorTests",
            dependencies: [
                "ZeroCopyReactor", "CZeroCopyShims", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZeroCopyReactorNIOTests",
            dependencies: ["ZeroCopyReactorNIO", "ZeroCopyReactor", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZeroCopyProfilerTests",
            dependencies: ["ZeroCopyProfiler", "ZeroCopyReactor", "CZeroCopyShims", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZeroCopyLoadTests",
            dependencies: ["ZeroCopyLoad", "ZeroCopyReactor", "TestSupport"],
            swiftSettings: strict
        ),
    ]
)
