// swift-tools-version:6.0
import PackageDescription
import Foundation

// Native code generation: the hot loops (im2col, BatchNorm, pooling) need AVX2/FMA to vectorise
// (see docs/PERFORMANCE.md). Set DISTRAINER_PORTABLE=1 to build for baseline x86-64.
let portable = ProcessInfo.processInfo.environment["DISTRAINER_PORTABLE"] == "1"
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = portable ? [] : [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let cpuFlags: [SwiftSetting] = []
#endif

let package = Package(
    name: "distrainer",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "distrainer", targets: ["Launcher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // MARK: C libraries (Debian packages, found with pkg-config)
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng16",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        /// oneDNN 2.6 (no pkg-config file in Debian; links libdnnl and its OpenMP runtime).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),

        /// Process-wide heap allocation counter (interposes malloc & co., forwards to glibc).
        .target(name: "CAllocCounter"),

        // MARK: Core libraries
        /// Small shared pieces: seeded RNG, atomic file writes, JSON lines, errors.
        .target(name: "Support", dependencies: ["CAllocCounter"], swiftSettings: cpuFlags),
        /// Every MPI call lives here.
        .target(name: "Dist", dependencies: ["CMPI", "Support"], swiftSettings: cpuFlags),
        /// Tensors, layers, losses, optimizers, checkpoints.
        .target(name: "Model", dependencies: ["COpenBLAS", "CDNNL", "Support"], swiftSettings: cpuFlags),
        /// Manifests, sharding, decoding, augmentation, batch loading, IDX import.
        .target(name: "Shards", dependencies: ["CPNG", "CZlib", "CCurl", "CTurboJPEG", "Support",
                                               .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: cpuFlags),
        /// The data-parallel training loop, evaluation and benchmark, built on the above.
        .target(name: "Training", dependencies: ["Dist", "Model", "Shards", "Support", "CAllocCounter"],
                swiftSettings: cpuFlags),

        // MARK: Executable
        .executableTarget(name: "Launcher", dependencies: [
            "Training", "Dist", "Model", "Shards", "Support",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: cpuFlags),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["Support"], path: "Tests/TestSupport"),
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport", "CAllocCounter"]),
        .testTarget(name: "ShardsTests", dependencies: ["Shards", "Support", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TestSupport"]),
        .testTarget(name: "DistTests", dependencies: ["Dist", "TestSupport", "Launcher"]),
        .testTarget(name: "LauncherTests", dependencies: ["Training", "Shards", "Model", "TestSupport", "Launcher"]),
    ]
)
