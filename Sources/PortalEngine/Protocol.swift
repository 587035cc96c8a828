/// The numbers of the portal protocol (PROTOCOL.md §2), as typed values.

/// A hypercall number. Guests on 64-bit targets may sign-extend a 32-bit
/// number into the register, so numbers are identified by their low 32 bits.
public struct HypercallNumber: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The number as it arrived in the (possibly 64-bit) number register.
    public init(register: UInt64) { self.rawValue = UInt32(truncatingIfNeeded: register) }

    public var description: String { hex(rawValue) }

    /// arg1 = payload size of every region the guest will use.
    public static let registerMemRegion = HypercallNumber(rawValue: 0xbebe_bebe)
    /// arg1 = guest address of the u64 interrupt flag, arg2 = 0.
    public static let enablePortalInterrupt = HypercallNumber(rawValue: 0x7901)
    /// The conversation in which pending interrupt work runs.
    public static let portalInterrupt = HypercallNumber(rawValue: 0x7902)

    public static let initModule = HypercallNumber(rawValue: 0x6408_400D)
    public static let syscallEnter = HypercallNumber(rawValue: 0x1338)
    public static let syscallReturn = HypercallNumber(rawValue: 0x1339)
    public static let signalDeliver = HypercallNumber(rawValue: 0x133b)
    public static let processExit = HypercallNumber(rawValue: 0x133c)
    public static let uprobeEnter = HypercallNumber(rawValue: 0x6901)
    public static let uprobeReturn = HypercallNumber(rawValue: 0x6902)
    public static let kprobeEnter = HypercallNumber(rawValue: 0x6903)
    public static let kprobeReturn = HypercallNumber(rawValue: 0x6904)
    public static let trampolineHit = HypercallNumber(rawValue: 0x7903)
    public static let hyperfsMagic = HypercallNumber(rawValue: 0x51ec_3692)

    /// The numbers the engine serves itself; work cannot be attached to them.
    public var isReservedByProtocol: Bool {
        self == .registerMemRegion || self == .enablePortalInterrupt || self == .portalInterrupt
    }
}

/// What the guest wrote into the header's op field after running a command.
public struct ResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let none = ResponseCode(rawValue: 0xf000_0000)
    public static let readOK = ResponseCode(rawValue: 0xf000_0001)
    public static let readFail = ResponseCode(rawValue: 0xf000_0002)
    public static let readPartial = ResponseCode(rawValue: 0xf000_0003)
    public static let writeOK = ResponseCode(rawValue: 0xf000_0004)
    public static let writeFail = ResponseCode(rawValue: 0xf000_0005)
    public static let readNumber = ResponseCode(rawValue: 0xf000_0006)
    /// One past the last valid code.
    public static let max = ResponseCode(rawValue: 0xf000_0007)

    public var isValid: Bool { rawValue >= Self.none.rawValue && rawValue < Self.max.rawValue }

    /// Whether the answer carries payload bytes (`size` of them).
    var carriesPayload: Bool { self == .readOK || self == .readPartial }

    public var name: String? {
        switch self {
        case .none: "NONE"
        case .readOK: "READ_OK"
        case .readFail: "READ_FAIL"
        case .readPartial: "READ_PARTIAL"
        case .writeOK: "WRITE_OK"
        case .writeFail: "WRITE_FAIL"
        case .readNumber: "READ_NUM"
        default: nil
        }
    }

    public var description: String { name ?? hex(rawValue) }
}

/// `pid` of a command meaning "the task that made the hypercall".
public let currentProcessID: UInt32 = 0xffff_ffff

/// `0x` and lowercase hex digits, the form every log line uses for numbers
/// and addresses.
@inline(never)
func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
