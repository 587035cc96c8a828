/// How the guest lays out numbers: register width and byte order.
public struct GuestLayout: Sendable, Equatable, CustomStringConvertible {
    /// The order of a number's bytes in guest memory.
    public enum ByteOrder: Sendable, Equatable {
        /// Least significant byte first.
        case little
        /// Most significant byte first.
        case big
    }

    /// 32 or 64.
    public let wordBits: Int
    /// The guest's byte order.
    public let byteOrder: ByteOrder

    package init(wordBits: Int, byteOrder: ByteOrder) {
        precondition(wordBits == 32 || wordBits == 64, "a guest word is 32 or 64 bits")
        self.wordBits = wordBits
        self.byteOrder = byteOrder
    }

    /// 64-bit little-endian (x86_64, aarch64, riscv64, loongarch64).
    public static let little64 = GuestLayout(wordBits: 64, byteOrder: .little)
    /// 32-bit little-endian (i386, arm, riscv32).
    public static let little32 = GuestLayout(wordBits: 32, byteOrder: .little)
    /// 32-bit big-endian (ppc).
    public static let big32 = GuestLayout(wordBits: 32, byteOrder: .big)
    /// 64-bit big-endian (ppc64).
    public static let big64 = GuestLayout(wordBits: 64, byteOrder: .big)

    /// Addresses and register values are cut to the guest's width: a
    /// negative Python int or a sign-extended register becomes a valid
    /// guest address.
    public var addressMask: UInt64 { wordBits == 64 ? .max : 0xffff_ffff }

    /// `64-bit little-endian`.
    public var description: String {
        "\(wordBits)-bit \(byteOrder == .little ? "little" : "big")-endian"
    }

    /// Reads an integer stored in guest byte order.
    /// - Parameters:
    ///   - type: The integer type.
    ///   - bytes: Where it is stored; may be unaligned.
    /// - Returns: The integer.
    @inline(__always)
    public func load<T: FixedWidthInteger>(_ type: T.Type, from bytes: UnsafeRawPointer) -> T {
        let raw = bytes.loadUnaligned(as: T.self)
        return byteOrder == .little ? T(littleEndian: raw) : T(bigEndian: raw)
    }

    /// Stores an integer in guest byte order.
    /// - Parameters:
    ///   - value: The integer.
    ///   - bytes: Where to store it; may be unaligned.
    @inline(__always)
    public func store<T: FixedWidthInteger>(_ value: T, to bytes: UnsafeMutableRawPointer) {
        bytes.storeBytes(of: byteOrder == .little ? value.littleEndian : value.bigEndian, as: T.self)
    }

    /// An integer's bytes in guest byte order.
    /// - Parameter value: The integer.
    /// - Returns: Its bytes, as many as the type is wide.
    public func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeTemporaryAllocation(byteCount: MemoryLayout<T>.size, alignment: 1) { buffer in
            store(value, to: buffer.baseAddress!)
            return Array(buffer)
        }
    }
}
