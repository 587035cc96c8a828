@testable import PortalEngine
import PortalTestSupport
import Synchronization

// What the engine tests share beside the mock guest (PortalTestSupport):
// the log recorder, engines, a booted guest, threads.

/// Collects log lines for exact assertions.
final class LogRecorder: Sendable {
    private let lines = Lock<[String]>([])

    var logger: PortalLogger { logger(level: .debug) }

    func logger(level: LogLevel) -> PortalLogger {
        PortalLogger(level: level) { [self] line in lines.withLock { $0.append(line) } }
    }

    var all: [String] { lines.withLock { $0 } }

    func matching(_ prefix: String) -> [String] { all.filter { $0.hasPrefix(prefix) } }
}

func makeEngine(_ configuration: PortalConfiguration = PortalConfiguration(),
                layout: GuestLayout = .little64, log: LogRecorder = LogRecorder()) -> PortalEngine {
    PortalEngine(configuration: configuration, layout: layout, logger: log.logger)
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(0) ... body(count - 1)` on that many new POSIX threads at once
/// (not the cooperative pool, which has one thread per core) and waits.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Start: @unchecked Sendable {
        let index: Int
        let body: @Sendable (Int) -> Void
        init(index: Int, body: @escaping @Sendable (Int) -> Void) {
            self.index = index
            self.body = body
        }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        var thread = pthread_t()
        let start = Unmanaged.passRetained(Start(index: index, body: body)).toOpaque()
        let created = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body(start.index)
            return nil
        }, start)
        precondition(created == 0, "pthread_create failed")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

/// A guest with its region size registered, on one vCPU.
func bootedGuest(_ engine: PortalEngine, layout: GuestLayout = .little64, regionSize: Int = 4072,
                 regionPages: Int = 64, vcpuIndex: Int = 0) -> (MockGuest, VCPU) {
    let guest = MockGuest(layout: layout, regionSize: regionSize, regionPages: regionPages)
    let vcpu = engine.makeVCPU(index: vcpuIndex)
    guest.registerRegion(engine, vcpu: vcpu)
    return (guest, vcpu)
}

/// An engine that keeps at most `maxConversations` conversations (and
/// reclaims one after `staleAfter` newer ones), a guest booted on it with
/// `regionPages` region pages, and a mapped page at 0x4000 for handlers to read.
func limitedEngine(maxConversations: Int, staleAfter: Int = PortalConfiguration().staleAfter,
                   regionPages: Int = 64) -> (PortalEngine, MockGuest, VCPU, LogRecorder) {
    let log = LogRecorder()
    var configuration = PortalConfiguration()
    configuration.maxConversations = maxConversations
    configuration.staleAfter = staleAfter
    let engine = makeEngine(configuration, log: log)
    let (guest, vcpu) = bootedGuest(engine, regionPages: regionPages)
    guest.map(0x4000, count: 4096)
    return (engine, guest, vcpu, log)
}
