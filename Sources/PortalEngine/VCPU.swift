/// Per-vCPU state, touched only by that vCPU's thread.
public final class VCPU: @unchecked Sendable {
    public let index: Int
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
    /// address. A conversation usually stays on one vCPU, so this skips the
    /// shared table (its lock and its hashing) on almost every trap, for a
    /// handful of interleaved conversations as for one; the conversation's
    /// claim keeps it correct when it migrates or has ended meanwhile.
    /// 4,096 slots (32 KiB per vCPU) keep even 4,096 conversations
    /// interleaved on one vCPU off the shared table: a round trip then costs
    /// the same as with one (`make bench`, "live conversations"). A
    /// conversation that ends is forgotten by the vCPU it ends on; one that
    /// migrated stays in its old slot, unused, until another replaces it.
    private let recent: UnsafeMutablePointer<Conversation?>
    private static let recentSlots = 4096

    init(index: Int) {
        self.index = index
        scratch = .allocate(byteCount: RegionHeader.size + 4096, alignment: 16)
        recent = .allocate(capacity: Self.recentSlots)
        recent.initialize(repeating: nil, count: Self.recentSlots)
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

    @inline(__always)
    func recentConversation(_ region: UInt64) -> Conversation? { recent[slot(region)] }

    @inline(__always)
    func remember(_ conversation: Conversation) {
        let slot = slot(conversation.regionAddress)
        if recent[slot] !== conversation { recent[slot] = conversation }
    }

    @inline(__always)
    func forget(_ conversation: Conversation) {
        let slot = slot(conversation.regionAddress)
        if recent[slot] === conversation { recent[slot] = nil }
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
