// An analysis module in Swift: counts the hypercalls it serves and reads a
// string from the guest on each, with an async handler, and runs one
// interrupt handler in the guest's first interrupt window.
import Glibc
import Portal
import PortalEngine
import Synchronization

/// What the module counts; handlers may run on several vCPUs at once.
final class Tally: Sendable {
    let served = Atomic<UInt64>(0)
    let stringsRead = Atomic<UInt64>(0)
}

/// The tally of the current load, for the exit hook.
nonisolated(unsafe) var tally = Tally()

/// Writes one line to standard error, where QEMU's plugin output goes.
func say(_ line: String) {
    let text = Array("swift-count: \(line)\n".utf8)
    _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// The module's entry point: libportal.so calls it once the engine is up.
/// - Parameter arguments: the `module_arg=` items after this module's `load=`
///   (unused here).
/// - Returns: 0 when the handlers are attached, 1 (with a line saying why)
///   when the engine refuses them.
@_cdecl("portal_analysis_init")
public func portalAnalysisInit(_ arguments: UnsafePointer<CChar>) -> Int32 {
    guard let engine = PortalPlugin.engine else {
        say("the plugin is not initialised")
        return 1
    }
    let counts = Tally()
    tally = counts
    do {
        try engine.attach(.syscallEnter) { guest in
            let count = counts.served.add(1, ordering: .relaxed).newValue
            let prefix = "#\(count): hypercall \(guest.call.number), arg1 0x\(String(guest.call.arg1, radix: 16))"
            do {
                let bytes = try await guest.readCString(at: guest.call.arg2)
                counts.stringsRead.add(1, ordering: .relaxed)
                if bytes.count <= 64, bytes.allSatisfy({ (0x20..<0x7f).contains($0) }) {
                    say("\(prefix): \"\(String(decoding: bytes, as: UTF8.self))\"")
                } else {
                    say("\(prefix): \(bytes.count) bytes that are not short text")
                }
                return UInt64(bytes.count)
            } catch {
                say("\(prefix): no string at arg2 (the guest could not read one there)")
                return 0
            }
        }
        engine.registerInterrupt("hello") { guest in
            _ = try await guest.readTime()
            say("interrupt 'hello' ran in the guest's interrupt window and read the guest clock")
        }
        try engine.queueInterrupt("hello")
    } catch {
        say("\(error)")
        return 1
    }
    say("serving hypercall \(HypercallNumber.syscallEnter), interrupt 'hello' queued")
    return 0
}

/// Called when the plugin unloads.
@_cdecl("portal_analysis_exit")
public func portalAnalysisExit() {
    say("served \(tally.served.load(ordering: .relaxed)) hypercalls, read \(tally.stringsRead.load(ordering: .relaxed)) strings")
}
