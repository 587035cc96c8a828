import CPortalShim
import PortalEngine

/// What the portal needs to know about a QEMU target: how its hypercall is
/// encoded, the gdb names of the number, argument and return registers
/// (PROTOCOL.md §1), and its word width and byte order.
struct QemuTarget: Sendable {
    let name: String
    let arch: portal_qemu_arch
    let layout: GuestLayout
    /// Each register with the names QEMU may give it, first match wins.
    let number: [String]
    let arguments: [[String]]
    let result: [String]

    static let supported: [QemuTarget] = [
        QemuTarget(name: "i386", arch: PORTAL_ARCH_X86, layout: .little32, number: ["eax"],
                   arguments: [["ebx"], ["ecx"], ["edx"], ["esi"]], result: ["eax"]),
        QemuTarget(name: "x86_64", arch: PORTAL_ARCH_X86, layout: .little64, number: ["rax"],
                   arguments: [["rdi"], ["rsi"], ["rdx"], ["r10"]], result: ["rax"]),
        QemuTarget(name: "aarch64", arch: PORTAL_ARCH_AARCH64, layout: .little64, number: ["x8"],
                   arguments: [["x0"], ["x1"], ["x2"], ["x3"]], result: ["x0"]),
        QemuTarget(name: "arm", arch: PORTAL_ARCH_ARM, layout: .little32, number: ["r7"],
                   arguments: [["r0"], ["r1"], ["r2"], ["r3"]], result: ["r0"]),
        QemuTarget(name: "riscv64", arch: PORTAL_ARCH_RISCV, layout: .little64, number: ["a7", "x17"],
                   arguments: [["a0", "x10"], ["a1", "x11"], ["a2", "x12"], ["a3", "x13"]],
                   result: ["a0", "x10"]),
        QemuTarget(name: "riscv32", arch: PORTAL_ARCH_RISCV, layout: .little32, number: ["a7", "x17"],
                   arguments: [["a0", "x10"], ["a1", "x11"], ["a2", "x12"], ["a3", "x13"]],
                   result: ["a0", "x10"]),
        QemuTarget(name: "ppc", arch: PORTAL_ARCH_PPC_BE, layout: .big32, number: ["r0"],
                   arguments: [["r3"], ["r4"], ["r5"], ["r6"]], result: ["r3"]),
        QemuTarget(name: "ppc64", arch: PORTAL_ARCH_PPC_BE, layout: .big64, number: ["r0"],
                   arguments: [["r3"], ["r4"], ["r5"], ["r6"]], result: ["r3"]),
        QemuTarget(name: "loongarch64", arch: PORTAL_ARCH_LOONGARCH, layout: .little64, number: ["r11", "a7"],
                   arguments: [["r4", "a0"], ["r5", "a1"], ["r6", "a2"], ["r7", "a3"]], result: ["r4", "a0"]),
    ]

    /// The target QEMU names, or why the portal cannot serve it.
    static func named(_ name: String) -> Result<QemuTarget, TargetError> {
        if let target = supported.first(where: { $0.name == name }) { return .success(target) }
        if name.hasPrefix("mips") {
            return .failure(TargetError(message: "target '\(name)' cannot be served: QEMU exposes no MIPS registers to plugins (its MIPS CPUs have no gdb register description), so the hypercall number and arguments cannot be read"))
        }
        return .failure(TargetError(message: "target '\(name)' is not supported; supported: \(supported.map(\.name).joined(separator: ", "))"))
    }
}

struct TargetError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// One vCPU's register handles, looked up by name when QEMU initialises it,
/// and its buffer for QEMU's accessors. Written and read only on that vCPU's
/// thread.
final class QemuRegisters: @unchecked Sendable {
    var buffer: UnsafeMutableRawPointer?
    // Separate fields rather than an array: reading an array held by a class
    // costs a retain and a release per access, on every trap.
    var number: UnsafeMutableRawPointer?
    var arg1: UnsafeMutableRawPointer?
    var arg2: UnsafeMutableRawPointer?
    var arg3: UnsafeMutableRawPointer?
    var arg4: UnsafeMutableRawPointer?
    var result: UnsafeMutableRawPointer?
    /// The return register's full width, learnt when it is first read:
    /// QEMU corrupts the guest if a register is written with fewer bytes.
    var resultWidth = 0

    var isComplete: Bool {
        number != nil && arg1 != nil && arg2 != nil && arg3 != nil && arg4 != nil && result != nil
    }
}

/// State of a QEMU load, beside the engine.
final class QemuFrontend: Sendable {
    let target: QemuTarget
    let registers: BorrowedObjects<QemuRegisters>

    init(target: QemuTarget, vcpuCount: Int) {
        self.target = target
        registers = BorrowedObjects((0..<vcpuCount).map { _ in QemuRegisters() })
    }

    /// Reads a register of `slot`'s vCPU as an unsigned number; `width`
    /// gets its full width.
    @inline(__always)
    func read(_ register: UnsafeMutableRawPointer, of slot: QemuRegisters, width: inout Int) -> UInt64? {
        var value: UInt64 = 0
        return portal_qemu_read_register(slot.buffer, register, bigEndian, &value, &width) ? value : nil
    }

    func write(_ register: UnsafeMutableRawPointer, of slot: QemuRegisters, value: UInt64, width: Int) -> Bool {
        portal_qemu_write_register(slot.buffer, register, bigEndian, value, width)
    }

    private var bigEndian: Bool { target.layout.byteOrder == .big }
}

/// Guest memory through QEMU's vaddr accessors, from a callback of the vCPU
/// whose buffer `slot` holds (QEMU knows which vCPU is calling).
func qemuMemory(_ slot: QemuRegisters) -> GuestMemory {
    GuestMemory(context: slot.buffer, read: portal_qemu_read_memory, write: portal_qemu_write_memory)
}

/// QEMU entry point: checks the target and the arguments, then watches every
/// translated block for the target's hypercall instruction.
@_cdecl("qemu_plugin_install")
@_spi(CAPI) public func qemuPluginInstall(_ id: UInt64, _ info: UnsafeRawPointer?, _ argc: Int32,
                              _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    let early = LogSink.standardError.logger(level: .error)
    guard portal_shim_has_qemu_host() else {
        early.error("qemu_plugin_install: the process does not export QEMU's plugin API")
        return -1
    }
    guard let info = info.map(portal_qemu_read_info) else {
        early.error("qemu_plugin_install: QEMU passed no qemu_info_t")
        return -1
    }
    let targetName = info.target_name.map { String(cString: $0) } ?? "(none)"
    guard info.system_emulation else {
        early.error("qemu_plugin_install: QEMU user-mode emulation (\(targetName)) has no guest kernel to talk to; use qemu-system-\(targetName)")
        return -1
    }
    let target: QemuTarget
    switch QemuTarget.named(targetName) {
    case .success(let found): target = found
    case .failure(let error):
        early.error("qemu_plugin_install: \(error)")
        return -1
    }
    let arguments = (0..<Int(max(argc, 0))).compactMap { argv?[$0].map { String(cString: $0) } }
    let vcpuCount = Int(max(info.max_vcpus, info.smp_vcpus, 1))
    guard let instance = PluginInstance.load(
        entryPoint: "qemu_plugin_install", arguments: arguments, layout: target.layout, vcpuCount: vcpuCount,
        qemu: QemuFrontend(target: target, vcpuCount: vcpuCount)) else { return -1 }
    portal_qemu_start(id, target.arch, portal_qemu_callbacks(
        vcpu_init: qemuVCPUInitialised, hypercall: qemuHypercall, at_exit: qemuExited,
        vcpu_resumed: qemuVCPUResumed))
    if !portal_qemu_capstone_available() {
        instance.logger.warn("Capstone (libcapstone.so.4) could not be loaded; hypercall instructions are recognised by their exact bytes alone")
    }
    instance.logger.info("loaded into qemu-system-\(targetName) (\(target.layout), \(vcpuCount) vCPUs)")
    return 0
}

private let qemuVCPUInitialised: @convention(c) (UInt32) -> Void = { index in
    PluginInstance.withCurrent { instance in
        guard let frontend = instance.qemu, frontend.registers.owned.indices.contains(Int(index)) else { return }
        let target = frontend.target
        let slot = frontend.registers.owned[Int(index)]
        // QEMU may initialise a vCPU again (hot-plug): keep its buffer.
        if slot.buffer == nil { slot.buffer = portal_qemu_new_buffer() }
        func find(_ names: [String]) -> UnsafeMutableRawPointer? {
            names.lazy.compactMap { portal_qemu_find_register($0) }.first
        }
        slot.number = find(target.number)
        let arguments = target.arguments.map(find)
        (slot.arg1, slot.arg2, slot.arg3, slot.arg4) = (arguments[0], arguments[1], arguments[2], arguments[3])
        slot.result = find(target.result)
        if !slot.isComplete {
            let missing = ([target.number] + target.arguments + [target.result]).filter { find($0) == nil }
                .map { $0.joined(separator: "/") }
            instance.logger.error("vCPU \(index): QEMU's \(target.name) CPU has no register named \(missing.joined(separator: ", ")); its hypercalls are ignored")
        }
    }
}

private let qemuHypercall: @convention(c) (UInt32) -> Void = { index in
    PluginInstance.withCurrent { instance in
        guard let frontend = instance.qemu else { return }
        // Register slots and engine vCPUs are made together, max_vcpus of each.
        let served: Void? = frontend.registers.with(Int(index)) { slot in
            instance.vcpus.with(Int(index)) { vcpu in
                serveQemuHypercall(instance, frontend, slot, vcpu)
            }
        }
        if served == nil {
            instance.logger.error("hypercall on vCPU \(index): QEMU reported more vCPUs than its max_vcpus; ignored")
        }
    }
}

/// One trap of vCPU `vcpu`, whose registers `slot` holds.
@inline(__always)
private func serveQemuHypercall(_ instance: PluginInstance, _ frontend: QemuFrontend, _ slot: QemuRegisters,
                                _ vcpu: VCPU) {
    guard slot.isComplete, slot.buffer != nil else { return }
    // Every register read is a trip through QEMU's gdb layer: read the
    // number first and the rest only as far as the engine needs them.
    var width = 0
    guard let number = frontend.read(slot.number!, of: slot, width: &width) else {
        instance.logger.error("hypercall on vCPU \(vcpu.index): QEMU could not read its number register; ignored")
        return
    }
    guard instance.engine.serves(number, vcpu: vcpu) else { return }
    guard let arg3 = frontend.read(slot.arg3!, of: slot, width: &width),
          let arg4 = frontend.read(slot.arg4!, of: slot, width: &width) else {
        instance.logger.error("hypercall \(HypercallNumber(register: number)) on vCPU \(vcpu.index): QEMU could not read its argument registers; ignored")
        return
    }
    var arg1: UInt64 = 0
    var arg2: UInt64 = 0
    if PortalEngine.needsArguments(number: number, answer: arg4) {
        guard let first = frontend.read(slot.arg1!, of: slot, width: &width),
              let second = frontend.read(slot.arg2!, of: slot, width: &width) else {
            instance.logger.error("hypercall \(HypercallNumber(register: number)) on vCPU \(vcpu.index): QEMU could not read its argument registers; ignored")
            return
        }
        (arg1, arg2) = (first, second)
    }
    let call = Hypercall(number: number, arg1: arg1, arg2: arg2, arg3: arg3, arg4: arg4, vcpu: vcpu.index)
    // QEMU's vaddr accessors are the vCPU's own view of the trapping task's
    // virtual memory: the region's accessor and, for handlers' reads and
    // writes, the direct view (direct memory first, unless direct_memory=off).
    let memory = qemuMemory(slot)
    guard case .returning(let value) = instance.engine.hypercall(call, vcpu: vcpu, memory: memory,
                                                                 directMemory: memory)
    else { return }
    if slot.resultWidth == 0 {
        var resultWidth = 0
        _ = frontend.read(slot.result!, of: slot, width: &resultWidth)
        slot.resultWidth = resultWidth
    }
    if slot.resultWidth == 0 || !frontend.write(slot.result!, of: slot, value: value, width: slot.resultWidth) {
        instance.logger.error("\(call.number) on vCPU \(vcpu.index): QEMU refused to write the return register")
    }
}

/// A vCPU runs again after waiting idle (the guest halted it until an
/// interrupt): the engine raises the interrupt flag if work is pending.
/// The guest module looks at the flag on syscalls and its timer, but the
/// plugin could otherwise write it only during a hypercall, so a request on
/// the control socket would wait for the idle guest's next trap. Nothing
/// pending: one atomic load after QEMU's own call.
private let qemuVCPUResumed: @convention(c) (UInt32) -> Void = { index in
    PluginInstance.withCurrent { instance in
        guard let frontend = instance.qemu else { return }
        frontend.registers.with(Int(index)) { slot in
            guard slot.buffer != nil else { return }
            instance.engine.announcePendingInterrupts(memory: qemuMemory(slot))
        }
    }
}

/// QEMU runs it from atexit() on the vCPU thread that asked to exit; the
/// other vCPUs may still be in a callback.
private let qemuExited: @convention(c) () -> Void = {
    PluginInstance.uninstall(vcpusMayRun: true)
}
