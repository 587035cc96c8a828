// swift-tools-version:6.0
import PackageDescription

// The Swift concurrency runtime's own share of a Swift handler's round trip,
// measured without the engine (bench/run.py builds and runs it; see main.swift).
let package = Package(
    name: "swift-runtime-floor",
    targets: [.executableTarget(name: "swift-runtime-floor")]
)
