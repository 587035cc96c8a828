/// Guest virtual memory as one vCPU sees it, supplied by the emulator front
/// end as two C functions and their context (a CPU pointer, say). Sendable:
/// it is only a pair of function pointers and an opaque pointer, used on the
/// thread of the trap it was made for.
///
/// A concrete type rather than a protocol: the engine's whole round trip is
/// then compiled, and inlined, inside this module, and the emulator's
/// accessors are called directly through their pointers. (Generic over a
/// protocol, the hot path was either unspecialised or specialised in the
/// plugin module without the engine's internals inlined: 10% more
/// instructions per round trip either way.)
package struct GuestMemory: @unchecked Sendable {
    /// Fills `length` bytes at `buffer` from guest `address`; false if any
    /// byte is not mapped.
    package typealias Read = @convention(c) (
        _ context: UnsafeMutableRawPointer?, _ address: UInt64, _ buffer: UnsafeMutableRawPointer?, _ length: Int
    ) -> Bool
    /// Copies `length` bytes from `buffer` to guest `address`; false if any
    /// byte is not mapped.
    package typealias Write = @convention(c) (
        _ context: UnsafeMutableRawPointer?, _ address: UInt64, _ buffer: UnsafeRawPointer?, _ length: Int
    ) -> Bool

    package let context: UnsafeMutableRawPointer?
    private let readFunction: Read
    private let writeFunction: Write

    package init(context: UnsafeMutableRawPointer?, read: Read, write: Write) {
        self.context = context
        self.readFunction = read
        self.writeFunction = write
    }

    @inline(__always)
    func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        buffer.isEmpty || readFunction(context, address, buffer.baseAddress, buffer.count)
    }

    @inline(__always)
    func write(_ address: UInt64, from buffer: UnsafeRawBufferPointer) -> Bool {
        buffer.isEmpty || writeFunction(context, address, buffer.baseAddress, buffer.count)
    }
}
