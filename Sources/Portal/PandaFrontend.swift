import CPortalShim
import PortalEngine

/// Guest memory of `cpu` through the PANDA-style emulator's accessors.
/// Used for the region and the interrupt flag only: this front end gives
/// the engine no direct view of memory (`directMemory:`), so Swift
/// handlers' reads and writes stay portal round trips here (the C harness
/// and the engine bench measure those through this front end).
func pandaMemory(_ cpu: OpaquePointer) -> GuestMemory {
    GuestMemory(context: UnsafeMutableRawPointer(cpu), read: portal_panda_read, write: portal_panda_write)
}

/// PANDA-style entry point: reads and checks the arguments, then serves
/// every hypercall of the guest. See include/portal/panda.h.
@_cdecl("init_plugin")
@_spi(CAPI) public func initPlugin(_ handle: UnsafeMutableRawPointer?) -> Bool {
    let early = LogSink.standardError.logger(level: .error)
    guard portal_shim_has_panda_host() else {
        early.error("init_plugin: the process does not export the PANDA-style emulator functions of portal/panda.h")
        return false
    }
    guard let handle else {
        early.error("init_plugin: the plugin handle is NULL")
        return false
    }
    var argv: UnsafePointer<UnsafePointer<CChar>?>? = nil
    let argc = Int(portal_panda_plugin_args(handle, &argv))
    let arguments = (0..<max(argc, 0)).compactMap { argv?[$0].map { String(cString: $0) } }

    let info = portal_panda_guest_info()
    guard info.word_bits == 32 || info.word_bits == 64 else {
        early.error("init_plugin: the emulator reports a \(info.word_bits)-bit guest, expected 32 or 64")
        return false
    }
    let layout = GuestLayout(wordBits: Int(info.word_bits), byteOrder: info.big_endian != 0 ? .big : .little)
    guard let instance = PluginInstance.load(entryPoint: "init_plugin", arguments: arguments, layout: layout,
                                             vcpuCount: Int(info.vcpu_count),
                                             handle: UInt(bitPattern: handle)) else { return false }
    portal_panda_register(handle, pandaHypercall)
    instance.logger.info("loaded for a \(layout) guest with \(info.vcpu_count) vCPUs")
    return true
}

/// PANDA-style exit point: ends the load `handle` made (see panda.h). A
/// handle that did not make the current load is refused with a line and
/// changes nothing.
@_cdecl("uninit_plugin")
@_spi(CAPI) public func uninitPlugin(_ handle: UnsafeMutableRawPointer?) {
    guard let (current, logger) = PluginInstance.withCurrent({ ($0.handle, $0.logger) }) else { return }
    guard let handle, current == UInt(bitPattern: handle) else {
        logger.error("uninit_plugin: handle \(handle.map { "\($0)" } ?? "NULL") did not load the plugin (the current load's handle is \(UnsafeRawPointer(bitPattern: current).map { "\($0)" } ?? "none")); nothing was unloaded")
        return
    }
    if portal_shim_has_panda_host() { portal_panda_unregister(handle) }
    _ = PluginInstance.uninstall(handle: UInt(bitPattern: handle))
}

private let pandaHypercall: panda_hypercall_cb = { cpu, registers in
    guard let cpu, let registers else { return false }
    return PluginInstance.withCurrent { instance in
        let index = Int(portal_panda_cpu_index(UnsafeMutableRawPointer(cpu)))
        let args = registers.pointee.args
        let call = Hypercall(number: registers.pointee.number, arg1: args.0, arg2: args.1, arg3: args.2,
                             arg4: args.3, vcpu: index)
        let outcome = instance.vcpus.with(index) { vcpu in
            instance.engine.hypercall(call, vcpu: vcpu, memory: pandaMemory(cpu))
        }
        switch outcome {
        case nil:
            instance.logger.error("hypercall \(call.number): the emulator says vCPU \(index), expected 0 to \(instance.vcpus.count - 1); ignored")
            return false
        case .notMine:
            return false
        case .handled:
            registers.pointee.set_return = false
            return true
        case .returning(let value):
            registers.pointee.return_value = value
            registers.pointee.set_return = true
            return true
        }
    } ?? false
}
