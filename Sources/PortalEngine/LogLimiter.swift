#if canImport(Glibc)
import Glibc
#endif

/// Keeps what the guest can make the engine log bounded.
///
/// Every line a guest can cause (a refused or abandoned conversation, a
/// stray answer, a refused registration, ...) goes through here, keyed by
/// its kind and its hypercall number. Each key may print `burst` lines per
/// `interval`; later ones in the same interval are counted, not printed:
/// the first of them is replaced by a line saying so. The next line of
/// that key after the interval first reports how many were suppressed. A
/// guest can therefore make the engine write at most `burst + 2` lines per
/// interval per kind and hypercall number, whatever it does.
///
/// Only error paths come here, so a lock is fine.
final class LogLimiter: Sendable {
    /// Lines each key may print per interval.
    let burst: Int
    /// The interval, in nanoseconds of `clock`.
    let interval: UInt64
    /// Monotonic nanoseconds; a test passes its own.
    let clock: @Sendable () -> UInt64

    struct Key: Hashable {
        var kind: String
        var number: UInt32
    }

    private struct Window {
        var start: UInt64
        var printed: Int
        var suppressed: Int
    }

    /// Windows of keys seen lately; trimmed to `maxKeys` by dropping
    /// windows that have nothing to report.
    private let windows = Lock<[Key: Window]>([:])
    private static let maxKeys = 4096

    init(burst: Int = 10, interval: UInt64 = 1_000_000_000,
         clock: @escaping @Sendable () -> UInt64 = LogLimiter.monotonicNanoseconds) {
        self.burst = burst
        self.interval = interval
        self.clock = clock
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    @Sendable static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// What to do with one more line of a key.
    enum Verdict: Equatable {
        /// Print it; `suppressedBefore` lines of this key were suppressed
        /// in its interval before and are reported first.
        case print(suppressedBefore: Int)
        /// The first line over the burst: say that lines are suppressed.
        case suppressFirst
        case suppress
    }

    /// Counts one more line of `key` and says what to do with it.
    /// - Parameter key: the line's kind and hypercall number.
    /// - Returns: the verdict.
    func admit(_ key: Key) -> Verdict {
        let now = clock()
        return windows.withLock { windows in
            if var window = windows[key], now &- window.start < interval {
                defer { windows[key] = window }
                if window.printed < burst {
                    window.printed += 1
                    return .print(suppressedBefore: 0)
                }
                window.suppressed += 1
                return window.suppressed == 1 ? .suppressFirst : .suppress
            }
            let earlier = windows[key]?.suppressed ?? 0
            if windows.count >= Self.maxKeys {
                windows = windows.filter { now &- $0.value.start < interval || $0.value.suppressed > 0 }
                if windows.count >= Self.maxKeys { windows.removeAll() }
            }
            windows[key] = Window(start: now, printed: 1, suppressed: 0)
            return .print(suppressedBefore: earlier)
        }
    }

    /// Lines suppressed and not yet reported, by key (for unload).
    func unreported() -> [(Key, Int)] {
        windows.withLock { windows in
            windows.filter { $0.value.suppressed > 0 }.map { ($0.key, $0.value.suppressed) }
                .sorted { ($0.0.number, $0.0.kind) < ($1.0.number, $1.0.kind) }
        }
    }
}
