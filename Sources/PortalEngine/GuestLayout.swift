/// How the guest lays out numbers: register width and byte order.
public struct GuestLayout: Sendable, Equatable, CustomStringConvertible {
    public enum ByteOrder: Sendable, Equatable {
        case little, big
    }

    /// 32 or 64.
    public let wordBits: Int
    public let byteOrder: ByteOrder

    public init(wordBits: Int, byteOrder: ByteOrder) {
        precondition(wordBits == 32 || wordBits == 64, "a guest word is 32 or 64 bits")
        self.wordBits = wordBits
        self.byteOrder = byteOrder
    }

    public static let little64 = GuestLayout(wordBits: 64, byteOrder: .little)
    public static let little32 = GuestLayout(wordBits: 32, byteOrder: .little)
    public static let big32 = GuestLayout(wordBits: 32, byteOrder: .big)
    public static let big64 = GuestLayout(wordBits: 64, byteOrder: .big)

    /// Addresses and register values are cut to the guest's width: a
    /// negative Python int or a sign-extended register becomes a valid
    /// guest address.
    public var addressMask: UInt64 { wordBits == 64 ? .max : 0xffff_ffff }

    public var description: String {
        "\(wordBits)-bit \(byteOrder == .little ? "little" : "big")-endian"
    }

    /// Reads an integer stored in guest byte order. `bytes` may be unaligned.
    @inline(__always)
    public func load<T: FixedWidthInteger>(_: T.Type, from bytes: UnsafeRawPointer) -> T {
        let raw = bytes.loadUnaligned(as: T.self)
        return byteOrder == .little ? T(littleEndian: raw) : T(bigEndian: raw)
    }

    /// Stores an integer in guest byte order. `bytes` may be unaligned.
    @inline(__always)
    public func store<T: FixedWidthInteger>(_ value: T, to bytes: UnsafeMutableRawPointer) {
        bytes.storeBytes(of: byteOrder == .little ? value.littleEndian : value.bigEndian, as: T.self)
    }

    /// Integer in guest order as an array of bytes.
    public func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeTemporaryAllocation(byteCount: MemoryLayout<T>.size, alignment: 1) { buffer in
            store(value, to: buffer.baseAddress!)
            return Array(buffer)
        }
    }
}
