import Synchronization

/// The conversations waiting for the guest's next trap, shared by every
/// vCPU: claiming one to continue it, admitting a new one (reclaiming
/// abandoned ones to make room), letting one go, and ending all at unload.
///
/// The table itself (`WaitingTable`) sits behind a mutex, which a vCPU
/// continuing a conversation it served before skips (its `VCPU` cache claims
/// the ticket directly). Whoever holds a conversation's claim is the only
/// one that sends its state machine events; the table's lock orders the
/// claim holders' entries and exits.
final class WaitingConversations: @unchecked Sendable {
    /// What a trap found waiting on its region.
    enum ClaimResult {
        /// This trap now holds the conversation's claim.
        case claimed(Conversation)
        /// Another vCPU is serving it at this moment.
        case busy
        /// Nothing waits on the region.
        case none
    }

    private let table = Lock(WaitingTable())
    /// Conversations that have started waiting so far: the clock by which a
    /// conversation the guest never came back to is recognised as abandoned.
    private let waitStarts = Atomic<UInt64>(0)
    private let limit: Int
    private let staleAfter: UInt64

    /// - Parameters:
    ///   - limit: `max_conversations`.
    ///   - staleAfter: `stale_after`.
    init(limit: Int, staleAfter: Int) {
        self.limit = limit
        self.staleAfter = UInt64(staleAfter)
    }

    /// Conversations waiting.
    var count: Int { table.withLock { $0.count } }

    /// Claims the conversation waiting on `region`, through `vcpu`'s cache
    /// when it served it last (no lock), else through the table.
    @inline(__always)
    func claim(_ region: UInt64, vcpu: VCPU) -> ClaimResult {
        if let conversation = vcpu.claimRecent(region) { return .claimed(conversation) }
        guard let (found, ticket, generation) = table.withLock({ table -> (Conversation, WaitingTicket, UInt64)? in
            guard let found = table[region], let ticket = found.ticket?.takeUnretainedValue() else { return nil }
            return (found, ticket, found.generation)
        }) else { return .none }
        let (claimed, state) = ticket.claim(generation, as: WaitingTicket.Claim.busy)
        if claimed {
            vcpu.remember(region, Unmanaged.passUnretained(ticket), generation)
            return .claimed(found)
        }
        return state == WaitingTicket.state(generation, WaitingTicket.Claim.busy) ? .busy : .none
    }

    /// Stamps `conversation` as heard from now (see `stale_after`).
    @inline(__always)
    func heard(_ conversation: Conversation) {
        conversation.lastHeard.store(waitStarts.load(ordering: .relaxed), ordering: .relaxed)
    }

    /// Enters a new conversation, its claim held by the caller.
    ///
    /// Abandoned conversations are reclaimed here, oldest first, in O(1)
    /// amortised per start (`WaitingTable`): any the guest has not come back
    /// to while `stale_after` others started waiting, and, when the table is
    /// full, the one it neglected longest, so that a guest that abandons
    /// conversations cannot lock well-behaved ones out. Only when every
    /// waiting conversation is being served by a vCPU at this moment is the
    /// new one refused.
    /// - Returns: why it may not wait (nil when it waits now), and the
    ///   conversations reclaimed with their state machines' endings, for the
    ///   caller to carry out outside the lock.
    func admit(_ conversation: Conversation)
        -> (refusal: PortalError?, reclaimed: [(Conversation, ConversationStateMachine.Action)]) {
        var reclaimed: [(Conversation, ConversationStateMachine.Action)] = []
        let refusal = table.withLock { table -> PortalError? in
            // Conversations leave the table before their claim ends, so one
            // still in it is live.
            if table[conversation.regionAddress] != nil { return .busyOnAnotherVCPU }
            let now = waitStarts.load(ordering: .relaxed) + 1
            waitStarts.store(now, ordering: .relaxed)
            // Entries a vCPU is serving right now are moved back; at most
            // one pass over the table is spent on them.
            var busySkipped = 0
            while busySkipped < table.count, let (oldest, heard) = table.leastRecentlyHeard() {
                let since = now - min(now, heard)
                let reason: PortalError
                if since > staleAfter {
                    reason = .neverCameBack(waitStarts: since)
                } else if table.count >= limit {
                    reason = .evictedForRoom(limit: limit, waitStarts: since)
                } else {
                    break
                }
                guard let ticket = oldest.ticket?.takeUnretainedValue(),
                      ticket.claim(oldest.generation, as: WaitingTicket.Claim.ended).claimed else {
                    table.moveToBack(oldest, stamp: now)
                    busySkipped += 1
                    continue
                }
                reclaimed.append((oldest, oldest.machine.endedFromOutside(reason)))
                table.remove(oldest)
            }
            guard table.count < limit else { return .conversationLimit(limit) }
            table.insert(conversation, stamp: now)
            return nil
        }
        return (refusal, reclaimed)
    }

    /// Takes `conversation` out; the caller holds its claim.
    func leave(_ conversation: Conversation) {
        table.withLock { $0.remove(conversation) }
    }

    /// Ends every waiting conversation no vCPU holds at this moment (one a
    /// running vCPU holds is left to it).
    /// - Returns: those ended, with their state machines' endings, for the
    ///   caller to carry out outside the lock.
    func endAll(because reason: PortalError) -> [(Conversation, ConversationStateMachine.Action)] {
        table.withLock { table in
            var ended: [(Conversation, ConversationStateMachine.Action)] = []
            for conversation in table.all {
                guard let ticket = conversation.ticket?.takeUnretainedValue(),
                      ticket.claim(conversation.generation, as: WaitingTicket.Claim.busy).claimed else { continue }
                ended.append((conversation, conversation.machine.endedFromOutside(reason)))
                table.remove(conversation)
            }
            return ended
        }
    }
}
