/// The conversations waiting for the guest's next trap, by region address,
/// and in the order the guest last came back to them.
///
/// Not synchronised itself: `WaitingConversations` holds it behind a lock. The order is
/// an intrusive list through the conversations (no allocation per entry),
/// kept lazily: a trap that continues a conversation only stores its
/// `lastHeard` stamp (the round trip takes no lock), and the list is put
/// right when its oldest entry is looked at — an entry heard from since it
/// was queued moves to the back. Each trap makes at most one such move
/// later, so finding the conversation the guest has neglected longest is
/// O(1) amortised, however many wait.
struct WaitingTable {
    private var byRegion: [UInt64: Conversation] = [:]
    /// Oldest first. The dictionary holds the references; the list only
    /// links entries that are in it.
    private unowned(unsafe) var oldest: Conversation?
    private unowned(unsafe) var newest: Conversation?
    /// Every ticket made (never freed: vCPU caches may still name one), and
    /// those free for the next conversation. At most `max_conversations`
    /// are ever made.
    private var tickets: [WaitingTicket] = []
    private var freeTickets: [WaitingTicket] = []

    /// Conversations waiting.
    var count: Int { byRegion.count }

    /// The conversation waiting on `region`, if any.
    subscript(region: UInt64) -> Conversation? { byRegion[region] }

    /// Enters `conversation`, which must not be waiting already; `stamp` is
    /// the engine's count of conversation starts (its clock) now.
    /// Its ticket comes with the claim held (busy) by the caller.
    mutating func insert(_ conversation: Conversation, stamp: UInt64) {
        byRegion[conversation.regionAddress] = conversation
        append(conversation, stamp: stamp)
        let ticket: WaitingTicket
        if let free = freeTickets.popLast() {
            ticket = free
        } else {
            ticket = WaitingTicket()
            tickets.append(ticket)
        }
        let generation = (ticket.state.load(ordering: .relaxed) >> 2) + 1
        ticket.conversation = conversation
        ticket.state.store(WaitingTicket.state(generation, WaitingTicket.Claim.busy), ordering: .relaxed)
        conversation.ticket = Unmanaged.passUnretained(ticket)
        conversation.generation = generation
    }

    /// Takes `conversation` out, if it is the one waiting on its region,
    /// and ends its ticket's generation. The caller holds its claim.
    mutating func remove(_ conversation: Conversation) {
        guard byRegion[conversation.regionAddress] === conversation else { return }
        unlink(conversation)
        byRegion[conversation.regionAddress] = nil
        if let ticket = conversation.ticket?.takeUnretainedValue() {
            ticket.release(conversation.generation, as: WaitingTicket.Claim.ended)
            ticket.conversation = nil
            freeTickets.append(ticket)
            conversation.ticket = nil
        }
    }

    /// What waits, by region address.
    var all: [Conversation] { byRegion.values.sorted { $0.regionAddress < $1.regionAddress } }

    /// The conversation the guest came back to least recently, and the
    /// stamp of that last time. Entries heard from since they were queued
    /// are moved to the back on the way.
    mutating func leastRecentlyHeard() -> (Conversation, lastHeard: UInt64)? {
        while let candidate = oldest {
            let heard = candidate.lastHeard.load(ordering: .relaxed)
            if heard <= candidate.queuedAt { return (candidate, heard) }
            moveToBack(candidate, stamp: heard)
        }
        return nil
    }

    /// Moves `conversation` to the back as if the guest had just come back
    /// to it (one a vCPU is serving right now cannot be reclaimed).
    mutating func moveToBack(_ conversation: Conversation, stamp: UInt64) {
        unlink(conversation)
        append(conversation, stamp: stamp)
    }

    private mutating func append(_ conversation: Conversation, stamp: UInt64) {
        conversation.queuedAt = stamp
        conversation.olderWaiting = newest
        conversation.newerWaiting = nil
        if let newest { newest.newerWaiting = conversation } else { oldest = conversation }
        newest = conversation
    }

    private mutating func unlink(_ conversation: Conversation) {
        if let older = conversation.olderWaiting { older.newerWaiting = conversation.newerWaiting }
        else { oldest = conversation.newerWaiting }
        if let newer = conversation.newerWaiting { newer.olderWaiting = conversation.olderWaiting }
        else { newest = conversation.olderWaiting }
        conversation.olderWaiting = nil
        conversation.newerWaiting = nil
    }
}
