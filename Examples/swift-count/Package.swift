// swift-tools-version:6.0
// Examples/swift-count - an analysis module in Swift, loaded into QEMU with
// -plugin PREFIX/lib/libportal.so,load=.build/release/libSwiftCount.so
import PackageDescription

// The portal package: this repository (two folders up), or the checkout
// PORTAL_PACKAGE names. SwiftPM names a path dependency after its folder.
let portalPath = Context.environment["PORTAL_PACKAGE"]
    ?? Context.packageDirectory.split(separator: "/").dropLast(2).map { "/\($0)" }.joined()
let portalIdentity = portalPath.split(separator: "/").last.map { $0.lowercased() } ?? "portal"

let package = Package(
    name: "swift-count",
    products: [
        // The module libportal.so loads: a shared library.
        .library(name: "SwiftCount", type: .dynamic, targets: ["SwiftCount"]),
    ],
    dependencies: [.package(path: portalPath)],
    targets: [
        .target(name: "SwiftCount", dependencies: [
            // libportal.so itself (the Swift API: PortalPlugin.engine, Guest, ...)
            .product(name: "portal", package: portalIdentity),
            // declares the API version the module is built for
            .product(name: "PortalAnalysisModule", package: portalIdentity),
        ]),
    ]
)
