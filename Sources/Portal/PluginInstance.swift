import PortalEngine
import Synchronization

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
    /// The PANDA-style `self` this load was made for (its address), 0 under QEMU.
    let handle: UInt

    init(configuration: PortalConfiguration, layout: GuestLayout, vcpuCount: Int, sink: LogSink,
         qemu: QemuFrontend? = nil, handle: UInt = 0) {
        self.sink = sink
        self.qemu = qemu
        self.handle = handle
        let engine = PortalEngine(configuration: configuration, layout: layout,
                                  logger: sink.logger(level: configuration.logLevel))
        self.engine = engine
        vcpus = BorrowedObjects((0..<vcpuCount).map { engine.makeVCPU(index: $0) })
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
        Demonstrations.unloading(unloaded)
        unloaded.engine.shutdown()
        if !vcpusMayRun { instance.release() }
    }

    /// What every front end does once it knows its guest: parse the
    /// arguments, open the log they name, make the instance current and
    /// attach the demonstration asked for. nil, after one log line naming
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
        let instance = PluginInstance(configuration: configuration, layout: layout, vcpuCount: vcpuCount,
                                      sink: sink, qemu: qemu(), handle: handle)
        guard install(instance) else {
            early.error("\(entryPoint): the plugin is already loaded; unload it first")
            return nil
        }
        if let demo = configuration.demo, !Demonstrations.install(demo, on: instance) {
            uninstall()
            return nil
        }
        return instance
    }
}

/// The loaded plugin, for Swift analysis code linked with libportal.so
/// (the `portal` product) that attaches its own handlers.
public enum PortalPlugin {
    /// The engine of the current load: nil before `init_plugin` /
    /// `qemu_plugin_install` and after unload.
    public static var engine: PortalEngine? { PluginInstance.withCurrent { $0.engine } }
}
