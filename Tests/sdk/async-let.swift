// Tests/sdk/async-let.swift - must NOT compile (make test-sdk): a Guest is
// not Sendable, so two guest operations cannot run at once with async let.
import PortalEngine

func attachRacing(_ engine: PortalEngine) throws {
    try engine.attach(.syscallEnter) { guest in
        async let first = guest.read(UInt8.self, at: 0x1000)
        async let second = guest.read(UInt8.self, at: 0x1001)
        return UInt64(try await first) + UInt64(try await second)
    }
}
