// swift-tools-version:6.0
// Tests/demo - the demonstration module libPortalDemo.so: the host side of
// the bare-metal test guests (module_arg=tour: make demo DEMO=bare, make
// test-guests, the fuzzer), of the Linux guest with the typed operations
// (module_arg=linux: make demo; module_arg=operations: make test-linux) and
// the Swift workloads of the benchmarks (module_arg=bench). Built by the
// Makefile (make demo-module); loaded with load=, like any analysis module.
import PackageDescription

// This repository, two folders up; SwiftPM names a path dependency after
// its folder.
let portalPath = Context.packageDirectory.split(separator: "/").dropLast(2).map { "/\($0)" }.joined()
let portalIdentity = portalPath.split(separator: "/").last.map { $0.lowercased() } ?? "portal"

let package = Package(
    name: "portal-demo",
    products: [
        .library(name: "PortalDemo", type: .dynamic, targets: ["PortalDemo"]),
    ],
    dependencies: [.package(path: portalPath)],
    targets: [
        .target(name: "PortalDemo", dependencies: [
            .product(name: "portal", package: portalIdentity),
            .product(name: "PortalAnalysisModule", package: portalIdentity),
        ]),
    ]
)
