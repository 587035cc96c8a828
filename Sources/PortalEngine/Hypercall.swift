/// The hypercall registers as the emulator read them.
public struct Hypercall: Sendable, Equatable {
    /// The number register, full width.
    public var rawNumber: UInt64
    /// The first argument register (an event's own argument).
    public var arg1: UInt64
    /// The second argument register (an event's own argument).
    public var arg2: UInt64
    /// The region address for hypercalls that run conversations.
    public var arg3: UInt64
    /// 0 on a conversation's first trap, then the guest's response code.
    public var arg4: UInt64
    /// The vCPU that trapped.
    public var vcpu: Int

    /// Makes the registers of one trap, as a front end read them.
    /// - Parameters:
    ///   - number: The number register, full width.
    ///   - arg1: The first argument register.
    ///   - arg2: The second argument register.
    ///   - arg3: The region address.
    ///   - arg4: 0, or the guest's response code.
    ///   - vcpu: The vCPU that trapped.
    package init(number: UInt64, arg1: UInt64 = 0, arg2: UInt64 = 0, arg3: UInt64 = 0,
                arg4: UInt64 = 0, vcpu: Int = 0) {
        self.rawNumber = number
        self.arg1 = arg1
        self.arg2 = arg2
        self.arg3 = arg3
        self.arg4 = arg4
        self.vcpu = vcpu
    }

    /// The hypercall number: the number register's low 32 bits.
    public var number: HypercallNumber { HypercallNumber(register: rawNumber) }
}

/// What the emulator does with a hypercall after the engine saw it.
package enum HypercallOutcome: Equatable, Sendable {
    /// Not a portal hypercall (or nobody attached work to it).
    case notMine
    /// Handled; leave the return register alone.
    case handled
    /// Handled; write this into the return register.
    case returning(UInt64)
}

/// Where something happened, as every log line about a conversation names it.
package struct TrapSite: Sendable, Equatable, CustomStringConvertible {
    /// The hypercall that started the conversation.
    package var number: HypercallNumber
    /// The vCPU that trapped.
    package var vcpu: Int
    /// The guest address of the conversation's region.
    package var regionAddress: UInt64

    package init(number: HypercallNumber, vcpu: Int, regionAddress: UInt64) {
        self.number = number
        self.vcpu = vcpu
        self.regionAddress = regionAddress
    }

    package var description: String {
        "hypercall \(number) on vCPU \(vcpu), region \(hex(regionAddress))"
    }
}
