/// The paging rules of the guest's lists, as values both the Swift
/// operations and the C decoders (`include/portal/operations.h`) step
/// through, so there is one implementation of each rule and of its bounds.

/// Paging did not converge; the message says how.
package struct PagingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, in words.
    package var message: String

    /// - Parameter message: What went wrong, with the numbers involved.
    package init(_ message: String) { self.message = message }

    /// The message, as logs print it.
    package var description: String { message }
}

/// OSI_PROC_ALL and OSI_MAPPINGS: ask with A = records collected so far,
/// until the records reach `total_count` or a page comes back empty.
///
/// Bounded: a total over `limit` or one that grows ends it with an error,
/// and every page that does not end the list adds at least one record, so
/// at most `limit` pages are ever asked for.
package struct SkipCountPaging: Sendable, Equatable {
    /// Records collected so far: the next command's A.
    package private(set) var collected: UInt64 = 0
    /// The total of the last page (nil before the first).
    package private(set) var total: UInt64? = nil
    /// Whether the list is complete.
    package private(set) var isDone = false
    /// The most records a guest can have in this list.
    package let limit: UInt64

    /// - Parameter limit: The most records a guest can have in this list.
    package init(limit: UInt64) { self.limit = limit }

    /// Resumes paging from a saved state (C keeps it in a `portal_list_cursor`).
    /// - Parameters:
    ///   - limit: The most records a guest can have in this list.
    ///   - collected: Records collected so far.
    ///   - total: The last page's total, nil before the first page.
    package init(limit: UInt64, collected: UInt64, total: UInt64?) {
        self.limit = limit
        self.collected = collected
        self.total = total
    }

    /// The next command's A (the skip count).
    package var nextAddress: UInt64 { collected }

    /// Takes in one page's counts.
    /// - Parameters:
    ///   - count: The records on the page.
    ///   - totalCount: The page's `total_count`.
    /// - Returns: true when the list is complete.
    /// - Throws: ``PagingError`` for a total that grows or exceeds the limit.
    package mutating func accept(count: Int, totalCount: UInt64) throws(PagingError) -> Bool {
        guard collected <= limit, count >= 0 else {
            throw PagingError("the paging state says \(collected) records were collected, more than the \(limit) a guest can have")
        }
        if let known = total, totalCount > known {
            throw PagingError("total_count grew from \(known) to \(totalCount) while paging (at record \(collected))")
        }
        guard totalCount <= limit else {
            throw PagingError("total_count \(totalCount) is more than the \(limit) a guest can have")
        }
        total = totalCount
        collected += UInt64(count)
        isDone = count == 0 || collected >= totalCount
        return isDone
    }
}

/// READ_FDS: ask with A = the fd to start from; each reply's header addr
/// is the fd to resume from (0 when done). Not fd + count: fd numbers have gaps.
///
/// Bounded: a page that does not end the list must hold fds and move the
/// resume fd forward, and at most `limit` fds are collected.
package struct ResumeFDPaging: Sendable, Equatable {
    /// The fd the next command starts from: its A.
    package private(set) var start: Int32 = 0
    /// fds collected so far.
    package private(set) var collected = 0
    /// Whether the list is complete.
    package private(set) var isDone = false
    /// The most fds a task can have.
    package let limit: Int

    /// - Parameter limit: The most fds a task can have.
    package init(limit: Int) { self.limit = limit }

    /// Resumes paging from a saved state (C keeps it in a `portal_list_cursor`).
    /// - Parameters:
    ///   - limit: The most fds a task can have.
    ///   - start: The fd the next page starts from.
    ///   - collected: fds collected so far.
    package init(limit: Int, start: Int32, collected: Int) {
        self.limit = limit
        self.start = start
        self.collected = collected
    }

    /// The next command's A: `start`, sign-extended.
    package var nextAddress: UInt64 { UInt64(bitPattern: Int64(start)) }

    /// Takes in one page's counts.
    /// - Parameters:
    ///   - count: The fds on the page.
    ///   - resume: The reply's header addr, as the guest's int.
    /// - Returns: true when the list is complete.
    /// - Throws: ``PagingError`` for a resume fd that does not move forward,
    ///   a page without fds that does not end the list, or too many fds.
    package mutating func accept(count: Int, resume: Int32) throws(PagingError) -> Bool {
        guard collected <= limit, count >= 0 else {
            throw PagingError("the paging state says \(collected) fds were collected, more than the \(limit) a task can have")
        }
        collected += count
        if resume == 0 {
            isDone = true
            return true
        }
        let place = "(page from fd \(start), \(collected) fds so far)"
        guard count > 0 else { throw PagingError("a page with no fds asks to resume at fd \(resume) \(place)") }
        guard resume > start else { throw PagingError("the reply's resume fd \(resume) does not move past \(start) \(place)") }
        guard collected < limit else {
            throw PagingError("more than \(limit) fds and the list has not ended \(place)")
        }
        start = resume
        return false
    }
}
