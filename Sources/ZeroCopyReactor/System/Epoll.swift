// epoll's constants, which Glibc's Swift overlay does not export (values from <sys/epoll.h>, fixed by the ABI).

enum Epoll {
    static let input: UInt32 = 0x001
    static let output: UInt32 = 0x004
    static let error: UInt32 = 0x008
    static let hangup: UInt32 = 0x010
    static let readHangup: UInt32 = 0x2000
    static let add: Int32 = 1
    static let delete: Int32 = 2
    static let modify: Int32 = 3
}
