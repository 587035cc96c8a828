import Synchronization

/// The protocol's own hypercalls (the region size, the interrupt flag), and
/// the lines a guest can cause, rate-limited.
extension PortalEngine {
    /// REGISTER_MEM_REGION: the payload bytes of the guest's regions (arg1).
    func registerRegion(_ call: Hypercall) {
        let requested = call.arg1 & layout.addressMask
        let site = "hypercall \(HypercallNumber.registerMemRegion) on vCPU \(call.vcpu)"
        guard requested >= 1, requested <= UInt64(PortalConfiguration.maxRegionSize) else {
            guestLog(.error, "region size refused", .registerMemRegion,
                     "\(site): region size \(requested) refused, expected 1 to \(PortalConfiguration.maxRegionSize) payload bytes; keeping \(regionSize)")
            return
        }
        registeredRegionSize.store(Int(requested), ordering: .relaxed)
        guestLog(.info, "region size", .registerMemRegion, "\(site): the guest's regions carry \(requested) payload bytes")
    }

    /// ENABLE_PORTAL_INTERRUPT: the guest address of its interrupt flag (arg1).
    func enableInterrupts(_ call: Hypercall, memory: GuestMemory) {
        let address = call.arg1 & layout.addressMask
        let site = "hypercall \(HypercallNumber.enablePortalInterrupt) on vCPU \(call.vcpu)"
        guard address != 0 else {
            guestLog(.error, "flag address refused", .enablePortalInterrupt,
                     "\(site): interrupt flag address 0 refused, expected the guest address of a u64")
            return
        }
        if call.arg2 != 0 {
            guestLog(.warn, "flag arg2", .enablePortalInterrupt,
                     "\(site): arg2 is \(hex(call.arg2)), expected 0; using the flag at \(hex(address))")
        }
        flagAddress.store(address, ordering: .relaxed)
        guestLog(.info, "flag address", .enablePortalInterrupt, "\(site): interrupt flag at \(hex(address))")
        // Work queued before the guest was ready is announced right away.
        if interrupts.hasPending { setFlag(1, memory: memory) }
    }

    /// Raises the interrupt flag if interrupt work is pending, outside any
    /// trap: a front end calls it when a vCPU runs again after waiting idle,
    /// on that vCPU's thread, so that an idle guest (one that makes no
    /// hypercalls) still learns of work queued from outside (the control
    /// socket). With nothing pending it costs one relaxed atomic load.
    /// - Parameter memory: guest memory of the calling vCPU.
    @inline(__always)
    package func announcePendingInterrupts(memory: GuestMemory) {
        if interrupts.hasPending { setFlag(1, memory: memory) }
    }

    /// Writes the interrupt flag in guest byte order. A failed write is
    /// harmless: the flag is written again at the next trap while work is pending.
    func setFlag(_ value: UInt64, memory: GuestMemory) {
        let address = flagAddress.load(ordering: .relaxed)
        guard address != 0 else { return }
        withUnsafeTemporaryAllocation(byteCount: 8, alignment: 8) { bytes in
            layout.store(value, to: bytes.baseAddress!)
            if !memory.write(address, from: UnsafeRawBufferPointer(bytes)) {
                logger.debug("could not write \(value) to the interrupt flag at \(hex(address)); trying again at the next trap")
            }
        }
    }


    /// Logs a line the guest caused, at most `LogLimiter.burst` per second
    /// per `kind` and hypercall `number`; what is suppressed is counted and
    /// reported with the next line of that kind after the second.
    func guestLog(_ level: LogLevel, _ kind: String, _ number: HypercallNumber,
                  _ message: @autoclosure () -> String) {
        guard level <= logger.level && level != .off else { return }
        switch logLimiter.admit(LogLimiter.Key(kind: kind, number: number.rawValue)) {
        case .print(let suppressedBefore):
            if suppressedBefore > 0 {
                logger.log(level, "hypercall \(number): \(suppressedBefore) more '\(kind)' lines were suppressed (at most \(logLimiter.burst) a second for each kind and hypercall)")
            }
            logger.log(level, message())
        case .suppressFirst:
            logger.log(level, "hypercall \(number): more than \(logLimiter.burst) '\(kind)' lines this second; further ones are counted, not printed")
        case .suppress:
            break
        }
    }

    /// `guestLog` for a conversation's failure.
    func guestLog(_ level: LogLevel, _ site: TrapSite, _ error: PortalError) {
        guestLog(level, error.kind, site.number, "\(site): \(error)")
    }
}
