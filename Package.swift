// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "portal",
    products: [
        // libportal.so: the plugin an emulator loads (PANDA-style or QEMU TCG).
        .library(name: "portal", type: .dynamic, targets: ["Portal"]),
        .library(name: "PortalEngine", targets: ["PortalEngine"]),
    ],
    targets: [
        // The protocol and the conversation engine: pure Swift, no emulator, no C.
        .target(name: "PortalEngine"),
        // The C side: emulator ABIs declared from their documentation, the
        // exported `qemu_plugin_version`, and calls that must be made from C.
        .target(
            name: "CPortalShim",
            cSettings: [.headerSearchPath("../../include")],
            linkerSettings: [.linkedLibrary("glib-2.0")]
        ),
        // The plugin: adapts each emulator ABI to the engine, and the C API.
        .target(name: "Portal", dependencies: ["PortalEngine", "CPortalShim"]),
        .testTarget(name: "PortalEngineTests", dependencies: ["PortalEngine"]),
    ]
)
