import CPortalShim
import PortalControl
import PortalEngine
import Synchronization

/// An analysis module whose `portal_analysis_init` succeeded: what is
/// needed to call its exit hook at unload.
struct LoadedModule: @unchecked Sendable {
    /// As given to `load=`, for log lines.
    let path: String
    /// Its entry points; the library handle stays open (modules.c says why).
    let module: portal_module
}

/// The plugin's version, as `query-portal` and the control socket's greeting report it.
let pluginVersion = (major: 0, minor: 1, micro: 0)

/// Everything one load of the plugin owns: the engine, its vCPUs and its log.
/// Exactly one instance is current between init and uninit, whichever
/// emulator loaded the library.
final class PluginInstance: Sendable {
    let engine: PortalEngine
    /// Indexed by vCPU number; created up front so a trap finds its vCPU
    /// without a lock.
    let vcpus: BorrowedObjects<VCPU>
    let sink: LogSink
    /// Register handles and the target, when QEMU loaded the plugin.
    let qemu: QemuFrontend?
    /// The analysis modules initialised so far, in load order.
    let modules = Lock<[LoadedModule]>([])
    /// The control socket (`control=PATH`), started by `load` once the instance is current.
    let control: ControlServer?
    /// The PANDA-style `self` this load was made for (its address), 0 under QEMU.
    let handle: UInt

    init(configuration: PortalConfiguration, layout: GuestLayout, vcpuCount: Int, sink: LogSink,
         qemu: QemuFrontend? = nil, handle: UInt = 0, trace: TraceFile? = nil) {
        self.sink = sink
        self.qemu = qemu
        self.handle = handle
        // Statistics are kept only for someone who can ask for them (a
        // control socket) or with a trace: otherwise the engine has no
        // recorder and its round trips pay nothing.
        let recorder = configuration.controlPath != nil || trace != nil ? ControlRecorder(trace: trace) : nil
        let engine = PortalEngine(configuration: configuration, layout: layout,
                                  logger: sink.logger(level: configuration.logLevel), recorder: recorder)
        self.engine = engine
        vcpus = BorrowedObjects((0..<vcpuCount).map { engine.makeVCPU(index: $0) })
        control = configuration.controlPath.map { path in
            let info = PortalInfo(
                version: "\(pluginVersion.major).\(pluginVersion.minor).\(pluginVersion.micro)",
                emulator: qemu == nil ? "panda" : "qemu", architecture: qemu?.target.name, vcpus: vcpuCount)
            let server = ControlServer(
                path: path, engine: engine,
                version: (pluginVersion.major, pluginVersion.minor, pluginVersion.micro, "portal \(info.version)"),
                logger: engine.logger
            ) { requests in StandardCommands.make(engine: engine, info: info, recorder: recorder,
                                                   requests: requests) }
            recorder?.sendEvents { [weak server] name, data in server?.emit(event: name, data: data) }
            return server
        }
    }

    var logger: PortalLogger { engine.logger }

    /// The instance of the current load, read on every trap.
    private static let current = Atomic<Unmanaged<PluginInstance>?>(nil)

    /// Calls `body` with the current instance without retaining it: the
    /// emulator stops calling the plugin before it unloads it, so the
    /// instance outlives every callback.
    @inline(__always)
    static func withCurrent<R>(_ body: (PluginInstance) -> R) -> R? {
        guard let instance = current.load(ordering: .acquiring) else { return nil }
        return instance._withUnsafeGuaranteedRef(body)
    }

    /// Makes `instance` current; false if another load is still current.
    /// A refused instance is released here, and with it its log descriptor.
    static func install(_ instance: PluginInstance) -> Bool {
        let retained = Unmanaged.passRetained(instance)
        guard current.compareExchange(expected: nil, desired: retained,
                                      ordering: .acquiringAndReleasing).exchanged else {
            retained.release()
            return false
        }
        return true
    }

    /// Where a refused argument is reported: the person reads the log they
    /// asked for, so the `log_file=` among the arguments when it opens,
    /// else standard error.
    private static func refusalSink(_ arguments: [String]) -> LogSink {
        guard let named = arguments.last(where: { $0.hasPrefix("log_file=") }).map({ String($0.dropFirst(9)) }),
              !named.isEmpty, case .success(let file) = LogSink.appending(to: named) else {
            return .standardError
        }
        return file
    }

    /// Ends the current load: every conversation still waiting is ended and
    /// logged. `vcpusMayRun`: the process is exiting from one vCPU while
    /// others may still be inside a callback with the instance borrowed
    /// (QEMU's at-exit callback), so the instance is left alive.
    static func uninstall(vcpusMayRun: Bool = false) {
        guard let instance = current.exchange(nil, ordering: .acquiringAndReleasing) else { return }
        end(instance, vcpusMayRun: vcpusMayRun)
    }

    /// Ends the current load only if it was made with `handle` (the
    /// PANDA-style `self`): an emulator's `uninit_plugin` for a plugin it
    /// never loaded must not tear down the one it did.
    /// - Parameter handle: the handle `uninit_plugin` was called with.
    /// - Returns: false, with nothing changed, when the current load has
    ///   another handle or there is none.
    static func uninstall(handle: UInt) -> Bool {
        guard let instance = current.load(ordering: .acquiring),
              instance._withUnsafeGuaranteedRef({ $0.handle == handle }),
              current.compareExchange(expected: instance, desired: nil,
                                      ordering: .acquiringAndReleasing).exchanged
        else { return false }
        end(instance, vcpusMayRun: false)
        return true
    }

    private static func end(_ instance: Unmanaged<PluginInstance>, vcpusMayRun: Bool) {
        let unloaded = instance.takeUnretainedValue()
        unloaded.exitModules()
        unloaded.control?.stop()
        unloaded.engine.shutdown()
        if !vcpusMayRun { instance.release() }
    }

    /// What every front end does once it knows its guest: parse the
    /// arguments, open the log they name, make the instance current and
    /// load the analysis modules named. nil, after one log line naming
    /// `entryPoint` and the reason, when any step refuses.
    static func load(entryPoint: String, arguments: [String], layout: GuestLayout, vcpuCount: Int,
                     handle: UInt = 0, qemu: @autoclosure () -> QemuFrontend? = nil) -> PluginInstance? {
        let early = LogSink.standardError.logger(level: .error)
        // Each vCPU's state is made up front (about 100 KiB: its conversation cache and region buffer).
        guard (1...4096).contains(vcpuCount) else {
            early.error("\(entryPoint): the emulator reports \(vcpuCount) vCPUs, expected 1 to 4096")
            return nil
        }
        let configuration: PortalConfiguration
        do {
            configuration = try PortalConfiguration.parse(arguments) { try PortalConfiguration.readTextFile($0) }
        } catch {
            refusalSink(arguments).logger(level: .error).error("\(entryPoint): \(error)")
            return nil
        }
        var sink = LogSink.standardError
        if let path = configuration.logFile {
            switch LogSink.appending(to: path) {
            case .success(let file): sink = file
            case .failure(let error):
                early.error("\(entryPoint): \(error)")
                return nil
            }
        }
        var trace: TraceFile?
        if let path = configuration.tracePath {
            do {
                trace = try TraceFile(path: path, ops: configuration.ops)
            } catch {
                sink.logger(level: .error).error("\(entryPoint): argument 'trace=\(path)': \(error)")
                return nil
            }
        }
        let instance = PluginInstance(configuration: configuration, layout: layout, vcpuCount: vcpuCount,
                                      sink: sink, qemu: qemu(), handle: handle, trace: trace)
        guard install(instance) else {
            early.error("\(entryPoint): the plugin is already loaded: libportal.so (or an analysis module linked with it) was given to the emulator twice; give analysis modules to libportal.so with load=PATH")
            return nil
        }
        // Modules attach through the C and Swift APIs, which reach the
        // engine through `current`: they are initialised once it is set.
        for request in configuration.modules {
            if let reason = instance.loadModule(request) {
                instance.logger.error("\(entryPoint): load=\(request.path): \(reason)")
                uninstall()
                return nil
            }
        }
        if let control = instance.control {
            do {
                try control.start()
            } catch {
                instance.logger.error("\(entryPoint): argument 'control=\(control.path)': \(error)")
                uninstall()
                return nil
            }
        }
        return instance
    }
}

extension PluginInstance {
    /// Opens, checks and initialises one analysis module; nil on success,
    /// else why it was refused.
    fileprivate func loadModule(_ request: AnalysisModuleRequest) -> String? {
        var module = portal_module()
        var reason = [CChar](repeating: 0, count: 1024)
        guard portal_module_open(request.path, &module, &reason, reason.count), let initialise = module.analysis_init else {
            return String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let status = initialise(request.argumentText)
        guard status == 0 else { return "its portal_analysis_init(\"\(request.argumentText)\") returned \(status)" }
        modules.withLock { $0.append(LoadedModule(path: request.path, module: module)) }
        return nil
    }

    /// Calls every initialised module's exit hook, the last loaded first,
    /// once: the list is emptied.
    fileprivate func exitModules() {
        let loaded = modules.withLock { list -> [LoadedModule] in
            defer { list.removeAll() }
            return list
        }
        for entry in loaded.reversed() { entry.module.analysis_exit?() }
    }
}

/// The loaded plugin, for Swift analysis code linked with libportal.so
/// (the `portal` product) that attaches its own handlers.
public enum PortalPlugin {
    /// The engine of the current load: nil before `init_plugin` /
    /// `qemu_plugin_install` and after unload.
    public static var engine: PortalEngine? { PluginInstance.withCurrent { $0.engine } }

    /// The QEMU target the current load serves (`"riscv64"`, `"x86_64"`,
    /// ...); nil under a PANDA-style emulator, before init and after unload.
    public static var qemuTarget: String? { PluginInstance.withCurrent { $0.qemu?.target.name } ?? nil }
}
