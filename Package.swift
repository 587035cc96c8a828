// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "portal",
    products: [
        // libportal.so: the plugin an emulator loads (PANDA-style or QEMU TCG).
        .library(name: "portal", type: .dynamic, targets: ["Portal"]),
        .library(name: "PortalEngine", targets: ["PortalEngine"]),
        // For a Swift analysis module (a .dynamic library loaded with
        // load=PATH): declares the API version the module is built for.
        .library(name: "PortalAnalysisModule", targets: ["PortalAnalysisModule"]),
        .library(name: "PortalOperations", targets: ["PortalOperations"]),
        .executable(name: "portalctl", targets: ["portalctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", exact: "0.12.1"),
    ],
    targets: [
        // The protocol and the conversation engine: pure Swift, no emulator, no C.
        .target(name: "PortalEngine"),
        // The C side: emulator ABIs declared from their documentation, the
        // exported `qemu_plugin_version`, and calls that must be made from C.
        .target(
            name: "CPortalShim",
            dependencies: ["CGLib"],
            cSettings: [.headerSearchPath("../../include")]
        ),
        // GLib, whose buffers QEMU's plugin API takes (scripts/setup.sh
        // installs it). Capstone is loaded at run time instead: see qemu.c.
        .systemLibrary(name: "CGLib", pkgConfig: "glib-2.0",
                       providers: [.apt(["libglib2.0-dev"])]),
        // The plugin: adapts each emulator ABI to the engine, and the C API.
        .target(name: "Portal", dependencies: ["PortalEngine", "PortalOperations", "PortalControl", "CPortalShim"]),
        // The control plane: a QMP server on a Unix socket whose commands
        // run as engine interrupt work, the typed operations among them
        // (no emulator specifics, no Foundation).
        .target(name: "PortalControl", dependencies: ["PortalEngine", "PortalOperations"]),
        // Capstone for `portalctl dis` (scripts/setup.sh installs libcapstone-dev).
        .systemLibrary(name: "CCapstone", pkgConfig: "capstone",
                       providers: [.apt(["libcapstone-dev"])]),
        // The command-line client of the control socket.
        .executableTarget(name: "portalctl", dependencies: [
            "PortalControl", "PortalEngine", "CCapstone",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "MCP", package: "swift-sdk"),
        ]),
        .testTarget(name: "PortalControlTests", dependencies: ["PortalControl", "PortalEngine", "PortalTestSupport"]),
        // The exported portal_analysis_api_version of a Swift analysis module.
        .target(name: "PortalAnalysisModule"),
        // What the Swift test targets share (Tests/PortalTestSupport): the one
        // mock guest module and the generated inputs' generator. Only test
        // targets depend on it; no product holds it.
        .target(name: "PortalTestSupport", dependencies: ["PortalEngine", "PortalOperations"],
                path: "Tests/PortalTestSupport"),
        .testTarget(name: "PortalEngineTests", dependencies: ["PortalEngine", "PortalTestSupport"]),
        // Typed guest operations (processes, mappings, fds, files, programs,
        // symbols) on top of the engine's raw commands: pure Swift, no C.
        .target(name: "PortalOperations", dependencies: ["PortalEngine"]),
        .testTarget(name: "PortalOperationsTests", dependencies: ["PortalOperations", "PortalTestSupport"]),
    ]
)
