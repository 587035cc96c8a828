@testable import PortalEngine
import PortalTestSupport
import PortalOperations
import Synchronization

let allLayouts: [GuestLayout] = [.little64, .little32, .big32, .big64]

/// Runs `body` as the work of one conversation with `guest`; returns what
/// it returned or threw.
func converse<T: Sendable>(_ guest: MockGuest, ops: OpTable = .standard,
                           _ body: nonisolated(nonsending) @escaping @Sendable (Guest) async throws -> T) -> Result<T, any Error> {
    var configuration = PortalConfiguration()
    configuration.ops = ops
    let engine = PortalEngine(configuration: configuration, layout: guest.layout,
                              logger: PortalLogger(level: .error) { _ in })
    let outcome = Mutex<Result<T, any Error>?>(nil)
    do {
        try engine.attach(.syscallEnter) { g in
            do {
                let value = try await body(g)
                outcome.withLock { $0 = .success(value) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            return 0
        }
    } catch {
        return .failure(error)
    }
    let vcpu = engine.makeVCPU(index: 0)
    guest.registerRegion(engine, vcpu: vcpu)
    _ = guest.portal(engine, vcpu: vcpu, number: HypercallNumber.syscallEnter.rawValue)
    engine.shutdown()
    return outcome.withLock { $0 } ?? .failure(PortalError.workFailed("the handler never finished"))
}

/// The error's description, or "no error" for a success.
func failure<T>(_ result: Result<T, any Error>) -> String {
    switch result {
    case .success: "no error"
    case .failure(let error): "\(error)"
    }
}

/// `n` processes; pid i + 100, names cycling through some that fill comm's 15 bytes.
func processWorld(count: Int) -> World {
    var world = World()
    let names = ["init", "a-very-long-name", "sh"]
    world.processes = (0..<count).map { (index: Int) -> FixtureProcess in
        FixtureProcess(pid: UInt32(100 + index), parentPID: index == 0 ? 0 : 100, name: names[index % 3],
                       uid: UInt32(index), gid: UInt32(index * 2), effectiveUID: 0xffff_fffe, effectiveGID: 7)
    }
    world.currentPID = 100
    return world
}

/// A task with `count` mappings whose names grow, so the string pool matters.
func mappingWorld(count: Int) -> World {
    var world = World()
    var task = FixtureProcess(pid: 7, parentPID: 1, name: "httpd")
    task.mappings = (0..<count).map { index in
        let names = ["/usr/sbin/httpd", "[heap]", "", "[anon:scratch]", "/lib/libc.so.6", "[stack]", "[vdso]"]
        return MemoryMapping(start: 0x40_0000 + UInt64(index) * 0x10000, size: 0x3000 + UInt64(index) * 0x1000,
                             fileOffset: UInt64(index) * 0x1000, flags: [0x1, 0x3, 0x5, 0xb, 0x7][index % 5],
                             device: index % 2 == 0 ? (8 << 20 | 1) : 0, inode: index % 2 == 0 ? 1000 + UInt64(index) : 0,
                             name: names[index % names.count])
    }
    world.processes = [task]
    world.currentPID = 7
    return world
}
