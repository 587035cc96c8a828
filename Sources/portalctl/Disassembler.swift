import CCapstone

/// Capstone for the guest's architecture, as `query-portal` names it.
struct Disassembler: ~Copyable {
    private var handle: csh = 0

    /// Opens Capstone for `architecture`.
    /// - Parameters:
    ///   - architecture: the emulator's target name (`x86_64`, `aarch64`, ...).
    ///   - thumb: arm only: Thumb-2 instead of A32.
    /// - Throws: `ClientError` for an architecture Capstone 4 does not know.
    init(architecture: String, thumb: Bool) throws {
        let arch: cs_arch
        var mode: Int32
        switch architecture {
        case "x86_64": (arch, mode) = (CS_ARCH_X86, CS_MODE_64.rawValue)
        case "i386": (arch, mode) = (CS_ARCH_X86, CS_MODE_32.rawValue)
        case "aarch64": (arch, mode) = (CS_ARCH_ARM64, CS_MODE_LITTLE_ENDIAN.rawValue)
        case "arm": (arch, mode) = (CS_ARCH_ARM, thumb ? CS_MODE_THUMB.rawValue : CS_MODE_ARM.rawValue)
        case "ppc": (arch, mode) = (CS_ARCH_PPC, CS_MODE_32.rawValue | CS_MODE_BIG_ENDIAN.rawValue)
        case "ppc64": (arch, mode) = (CS_ARCH_PPC, CS_MODE_64.rawValue | CS_MODE_BIG_ENDIAN.rawValue)
        default:
            throw ClientError(message: "Capstone 4 cannot disassemble \(architecture) code")
        }
        guard cs_open(arch, cs_mode(rawValue: mode), &handle) == CS_ERR_OK else {
            throw ClientError(message: "Capstone could not be opened for \(architecture)")
        }
    }

    deinit {
        var closing = handle
        cs_close(&closing)
    }

    /// One decoded instruction.
    struct Instruction {
        let address: UInt64
        let bytes: [UInt8]
        let mnemonic: String
        let operands: String
    }

    /// Decodes `code` as if it were at `address`, stopping at the first
    /// byte sequence that is no instruction.
    /// - Parameters:
    ///   - code: the bytes.
    ///   - address: the guest address of the first byte.
    /// - Returns: the instructions, in order.
    func disassemble(_ code: [UInt8], at address: UInt64) -> [Instruction] {
        var decoded: UnsafeMutablePointer<cs_insn>?
        let count = code.withUnsafeBufferPointer { cs_disasm(handle, $0.baseAddress, $0.count, address, 0, &decoded) }
        guard count > 0, let decoded else { return [] }
        defer { cs_free(decoded, count) }
        return (0..<count).map { index in
            var instruction = decoded[index]
            let bytes = withUnsafeBytes(of: &instruction.bytes) { Array($0.prefix(Int(instruction.size))) }
            let mnemonic = withUnsafeBytes(of: &instruction.mnemonic) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            let operands = withUnsafeBytes(of: &instruction.op_str) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            return Instruction(address: instruction.address, bytes: bytes, mnemonic: mnemonic, operands: operands)
        }
    }
}
