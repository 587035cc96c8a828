#if canImport(Glibc)
import Glibc
#endif

/// State behind a pthread mutex.
///
/// Not `Synchronization.Mutex`: on Linux that is a bare futex which
/// ThreadSanitizer cannot see, so it reports every access the mutex protects
/// as a race and `make test`'s TSan run would prove nothing. A pthread mutex
/// is intercepted by TSan and costs the same uncontended.
package final class Lock<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State

    package init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
