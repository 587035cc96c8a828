/// Per-vCPU state, touched only by that vCPU's thread.
package final class VCPU: @unchecked Sendable {
    package let index: Int
    /// This vCPU's announcement when it reads the handler table.
    let handlerReader = HandlerReader()
    /// Header and payload of the region being written or read: every round
    /// trip goes through it, so none allocates.
    private var scratch: UnsafeMutableRawBufferPointer
    /// The buffer `scratch` replaced when the guest registered a larger
    /// region size during this trap. A work's step may still point into it
    /// (a C step may send `response->data` back as its next command's
    /// payload), so it lives until the trap is over: freed by
    /// `endTrap`, never before the command has been encoded.
    private var retiredScratch: UnsafeMutableRawBufferPointer?
    /// Conversations this vCPU served recently, by a hash of their region
    /// address, as (region, ticket, generation): no reference to the
    /// conversation itself, so an entry keeps nothing alive after its
    /// conversation ended, on this vCPU or any other. A conversation usually
    /// stays on one vCPU, so this skips the shared table (its lock and its
    /// hashing) on almost every trap, for a handful of interleaved
    /// conversations as for one; claiming the ticket's generation keeps it
    /// correct when the conversation migrated or has ended meanwhile.
    /// 4,096 slots (96 KiB per vCPU) keep even 4,096 conversations
    /// interleaved on one vCPU off the shared table (`make bench`, "live
    /// conversations").
    private let recent: UnsafeMutablePointer<RecentEntry>
    private static let recentSlots = 4096

    struct RecentEntry {
        var region: UInt64
        var ticket: Unmanaged<WaitingTicket>?
        var generation: UInt64
    }

    init(index: Int) {
        self.index = index
        scratch = .allocate(byteCount: RegionHeader.size + 4096, alignment: 16)
        recent = .allocate(capacity: Self.recentSlots)
        recent.initialize(repeating: RecentEntry(region: 0, ticket: nil, generation: 0), count: Self.recentSlots)
    }

    deinit {
        retiredScratch?.deallocate()
        scratch.deallocate()
        recent.deinitialize(count: Self.recentSlots)
        recent.deallocate()
    }

    /// Regions are pages: skip the page offset, fold in higher bits.
    @inline(__always)
    private func slot(_ region: UInt64) -> Int {
        Int(truncatingIfNeeded: (region >> 12) ^ (region >> 20)) & (Self.recentSlots - 1)
    }

    /// Claims the conversation this vCPU last served on `region`, if its
    /// ticket is still in that generation and idle. The ticket is used
    /// through the entry's unowned reference: tickets outlive every cache.
    @inline(__always)
    func claimRecent(_ region: UInt64) -> Conversation? {
        let entry = recent[slot(region)]
        guard entry.region == region, let ticket = entry.ticket else { return nil }
        return ticket._withUnsafeGuaranteedRef { ticket in
            ticket.claim(entry.generation, as: WaitingTicket.Claim.busy).claimed
                ? ticket.conversation.unsafelyUnwrapped : nil
        }
    }

    @inline(__always)
    func remember(_ region: UInt64, _ ticket: Unmanaged<WaitingTicket>, _ generation: UInt64) {
        recent[slot(region)] = RecentEntry(region: region, ticket: ticket, generation: generation)
    }

    /// A buffer for a header and `payloadSize` payload bytes. Growing it
    /// keeps the old one alive until `endTrap`: the answer the work is
    /// looking at may lie in it.
    @inline(__always)
    func scratch(payloadSize: Int) -> UnsafeMutableRawBufferPointer {
        let needed = RegionHeader.size + payloadSize
        if scratch.count < needed { grow(to: needed) }
        return scratch
    }

    @inline(never)
    private func grow(to needed: Int) {
        // At most one answer is read per trap, so at most one buffer the work
        // may reference is retired; an earlier retired one is unreachable.
        retiredScratch?.deallocate()
        retiredScratch = scratch
        scratch = .allocate(byteCount: needed, alignment: 16)
    }

    /// The trap is over: no work can reference a retired buffer any more.
    @inline(__always)
    func endTrap() {
        if let retired = retiredScratch {
            retired.deallocate()
            retiredScratch = nil
        }
    }
}
