// Tests/sdk/one-at-a-time.swift - compiles (make test-sdk): the same two
// reads as async-let.swift, awaited one at a time.
import PortalEngine

func attachInTurn(_ engine: PortalEngine) throws {
    try engine.attach(.syscallEnter) { guest in
        let first = try await guest.read(UInt8.self, at: 0x1000)
        let second = try await guest.read(UInt8.self, at: 0x1001)
        return UInt64(first) + UInt64(second)
    }
}
