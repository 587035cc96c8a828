// Input of scripts/check-api-docs.py's own test (make check-api-docs):
// each declaration below lacks what its name says; expected.txt lists the
// exact lines the checker must print.

public struct Undocumented { }

/// Documented.
public enum Choice {
    /// Documented.
    case documented
    case undocumentedCase
    /// Documented.
    public func missingParameters(_ value: Int) {}
    /// Documented.
    /// - Parameter value: Documented.
    nonisolated(nonsending) public func missingReturnsAndThrows(_ value: Int) async throws -> Int { value }
    /// Documented.
    /// - Parameter body: A closure whose own `throws` and `->` are not the function's.
    public func closureParameter(_ body: () throws -> Int) {}
}

/// Documented.
public protocol Requirements {
    func undocumentedRequirement()
    /// Documented.
    var documented: Int { get }
}

/// Documented.
extension Choice {
    @discardableResult
    public static func undocumentedAfterAttribute() -> Int { 0 }
    /// Documented.
    public var text: String { "public func inAString() {}" }
    @_spi(C) public func spiNeedsACommentToo(_ value: Int) -> Int { value }
    /// Documented: `@_spi` needs no sections.
    @_spi(C) public func spiWithComment(_ value: Int) -> Int { value }
    package func notPublic(_ value: Int) -> Int { value }
    func notPublicEither() {}
}
