import Synchronization

/// The claim of a waiting conversation, in memory the engine never frees
/// while it lives: tickets are pooled by the waiting table and handed to
/// one conversation after another, each time with a new generation.
///
/// This is what lets each vCPU remember the conversations it served
/// without keeping them alive: its cache holds (ticket, generation) pairs,
/// and claiming a conversation through a remembered pair is one
/// compare-and-swap that fails once that generation is over. A conversation
/// is referenced only by the waiting table and the trap serving it, so the
/// memory held is bounded by `max_conversations`, not by the caches.
final class WaitingTicket: @unchecked Sendable {
    /// `generation << 2 | claim`.
    let state = Atomic<UInt64>(0)
    /// The conversation of the current generation: read only by whoever
    /// holds its claim, set and cleared under the table's lock.
    var conversation: Conversation?

    enum Claim {
        static let idle: UInt64 = 0
        static let busy: UInt64 = 1
        static let ended: UInt64 = 2
    }

    @inline(__always)
    static func state(_ generation: UInt64, _ claim: UInt64) -> UInt64 { generation << 2 | claim }

    /// Takes the claim of `generation` from idle to `desired`; the state
    /// found when it was not idle.
    @inline(__always)
    func claim(_ generation: UInt64, as desired: UInt64) -> (claimed: Bool, found: UInt64) {
        let (exchanged, original) = state.compareExchange(
            expected: Self.state(generation, Claim.idle), desired: Self.state(generation, desired),
            ordering: .acquiring)
        return (exchanged, original)
    }

    /// Lets go of the claim of `generation` (the holder does this).
    @inline(__always)
    func release(_ generation: UInt64, as claim: UInt64) {
        state.store(Self.state(generation, claim), ordering: .releasing)
    }
}
