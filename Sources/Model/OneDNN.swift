import CDNNL
import Support

/// oneDNN (libdnnl 2.6, C API) plumbing: one CPU engine, memory descriptors, owned buffers,
/// primitives with their argument lists prepared once, and reorders between layouts.
/// Creation failures are programming errors (a descriptor oneDNN cannot build) and stop with
/// the operation's name; nothing here runs in the step loop except `DNNLPrimitive.run`.
public enum OneDNN {
    nonisolated(unsafe) static let engine: dnnl_engine_t = {
        var e: dnnl_engine_t?
        check(dnnl_engine_create(&e, dnnl_cpu, 0), "creating the CPU engine")
        return e!
    }()

    /// oneDNN's version, e.g. "2.6.3".
    public static var version: String {
        let v = dnnl_version()!.pointee
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// Sets oneDNN's (OpenMP's) thread count for this process.
    public static func setThreads(_ n: Int) { omp_set_num_threads(Int32(max(1, n))) }
    public static var threads: Int { Int(omp_get_max_threads()) }

    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) {
        if status != dnnl_success { fatalError("oneDNN: \(what()) failed (status \(status.rawValue))") }
    }

    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map(Int64.init)
        check(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, dnnl_f32, tag), "memory descriptor \(dims)")
        return md
    }

    static func same(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func bytes(_ md: dnnl_memory_desc_t) -> Int {
        var md = md
        return dnnl_memory_desc_get_size(&md)
    }

    /// A blocked descriptor's format in oneDNN's tag notation (e.g. "OIhw16i16o"), naming the
    /// dimensions with `letters` (e.g. "oihw"): outer dimensions by falling stride (those of
    /// size 1 left out), upper case where blocked, then the inner blocks.
    static func formatName(_ md: dnnl_memory_desc_t, letters: String) -> String {
        let letters = Array(letters), n = Int(md.ndims)
        precondition(md.format_kind == dnnl_blocked && letters.count == n, "not a blocked \(letters.count)-d descriptor")
        var blocking = md.format_desc.blocking
        let strides = withUnsafeBytes(of: &blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(n)) }
        let blocks = withUnsafeBytes(of: &blocking.inner_blks) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        let indices = withUnsafeBytes(of: &blocking.inner_idxs) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        let blocked = Set(indices.map(Int.init))
        // Dimensions of size 1 do not order anything (a 1×1 kernel's h and w): left out, so equal
        // memory orders get equal names.
        let dims = withUnsafeBytes(of: md.dims) { Array($0.bindMemory(to: Int64.self).prefix(n)) }
        let outer = (0..<n).filter { dims[$0] > 1 || blocked.contains($0) }
            .sorted { strides[$0] > strides[$1] || (strides[$0] == strides[$1] && $0 < $1) }
        return outer.map { blocked.contains($0) ? String(letters[$0]).uppercased() : String(letters[$0]) }.joined()
            + zip(blocks, indices).map { "\($0)\(letters[Int($1)])" }.joined()
    }

    static func query(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, index)!.pointee
    }

    /// Primitive attributes with a user-provided scratchpad (and optionally dst += result).
    static func attributes(accumulate: Bool = false) -> dnnl_primitive_attr_t {
        var attr: dnnl_primitive_attr_t?
        check(dnnl_primitive_attr_create(&attr), "attributes")
        check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode")
        if accumulate {
            var ops: dnnl_post_ops_t?
            check(dnnl_post_ops_create(&ops), "post-ops")
            check(dnnl_post_ops_append_sum(ops, 1), "sum post-op")
            check(dnnl_primitive_attr_set_post_ops(attr, ops), "setting post-ops")
            dnnl_post_ops_destroy(ops)
        }
        return attr!
    }

    /// A primitive descriptor for `op`, or nil when oneDNN has no implementation for it.
    static func primitiveDesc(_ op: UnsafeRawPointer, hint: dnnl_primitive_desc_t? = nil,
                              accumulate: Bool = false) -> dnnl_primitive_desc_t? {
        let attr = attributes(accumulate: accumulate)
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, op, attr, engine, hint) == dnnl_success else { return nil }
        return pd
    }
}

/// A oneDNN memory object: either over a buffer it owns (zero-filled, 64-byte aligned) or over
/// caller memory whose address is set before each use.
final class DNNLMemory {
    let memory: dnnl_memory_t
    let desc: dnnl_memory_desc_t
    let owned: UnsafeMutableRawPointer?

    /// Over a buffer of its own.
    init(_ desc: dnnl_memory_desc_t) {
        self.desc = desc
        let n = max(64, OneDNN.bytes(desc))
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        owned = p
        var m: dnnl_memory_t?, d = desc
        OneDNN.check(dnnl_memory_create(&m, &d, OneDNN.engine, p), "memory")
        memory = m!
    }

    /// Over `buffer` (not owned; nil: set it with `point(at:)` before use).
    init(_ desc: dnnl_memory_desc_t, over buffer: UnsafeMutableRawPointer?) {
        self.desc = desc
        owned = nil
        var m: dnnl_memory_t?, d = desc
        OneDNN.check(dnnl_memory_create(&m, &d, OneDNN.engine, buffer ?? cdnnl_memory_none()), "memory")
        memory = m!
    }

    deinit {
        dnnl_memory_destroy(memory)
        owned?.deallocate()
    }

    var pointer: UnsafeMutablePointer<Float> { owned!.assumingMemoryBound(to: Float.self) }

    @inline(__always) func point(at p: UnsafeRawPointer) {
        dnnl_memory_set_data_handle(memory, UnsafeMutableRawPointer(mutating: p))
    }
}

/// A primitive with its execution arguments fixed at creation.
final class DNNLPrimitive {
    let primitive: dnnl_primitive_t
    private let args: UnsafeMutablePointer<dnnl_exec_arg_t>
    private let count: Int
    /// The memories the arguments refer to, kept alive with the primitive.
    private let keep: [DNNLMemory]

    init(_ pd: dnnl_primitive_desc_t, _ arguments: [(Int32, DNNLMemory)]) {
        var p: dnnl_primitive_t?
        OneDNN.check(dnnl_primitive_create(&p, pd), "primitive")
        primitive = p!
        count = arguments.count
        args = .allocate(capacity: max(1, count))
        for (i, a) in arguments.enumerated() { args[i] = dnnl_exec_arg_t(arg: a.0, memory: a.1.memory) }
        keep = arguments.map(\.1)
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        args.deallocate()
    }

    @inline(__always) func run(_ stream: dnnl_stream_t) {
        // oneDNN allocates inside every execute (C API: a std::unordered_map of the arguments,
        // one node per argument and a bucket array, plus a few in some kernels); marked so they
        // come from the thread's arena, not the system allocator (CAllocCounter).
        let status = LibraryCall.run { dnnl_primitive_execute(primitive, stream, Int32(count), args) }
        OneDNN.check(status, "execution")
    }

    /// A reorder from `source` into `destination` (dst += reordered source when `accumulate`).
    static func reorder(_ source: DNNLMemory, _ destination: DNNLMemory, accumulate: Bool = false) -> DNNLPrimitive {
        let attr = OneDNN.attributes(accumulate: accumulate)
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_library)
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?, s = source.desc, d = destination.desc
        OneDNN.check(dnnl_reorder_primitive_desc_create(&pd, &s, OneDNN.engine, &d, OneDNN.engine, attr), "reorder")
        defer { dnnl_primitive_desc_destroy(pd) }
        return DNNLPrimitive(pd!, [(DNNL_ARG_FROM, source), (DNNL_ARG_TO, destination)])
    }
}

/// A tensor seen in the caller's layout (`user`, pointed at the caller's memory on each call)
/// and in the layout a primitive asked for (`inner`): the same memory when the layouts agree,
/// else an owned buffer and a reorder between the two.
///
/// An accumulating output (user += result) computes into an owned buffer and adds it with a
/// reorder; when the caller's memory is known to be zero (`target(_:accumulate: false)`) it is
/// written instead: by a plain reorder, or, when the layouts agree (and, for kernels that need
/// it, the memory is 64-byte aligned), by the primitive directly.
final class DNNLStaged {
    let user: DNNLMemory
    let inner: DNNLMemory
    private let reorder: DNNLPrimitive?
    /// For an accumulating output: the plain reorder (user = inner), for a user known to be zero.
    private let overwrite: DNNLPrimitive?
    /// An accumulating output whose layouts agree: the primitive may write the user memory.
    private let writesInPlace: Bool
    /// Writing in place needs 64-byte aligned user memory (Winograd's weight-gradient kernel
    /// writes with aligned stores; direct kernels do not care).
    private let inPlaceNeedsAlignment: Bool
    /// What `store` does after the primitive ran (set by `target`).
    private var pending: DNNLPrimitive?

    /// `input`: the reorder goes user → inner (before the primitive), else inner → user (after;
    /// with `accumulate`, user += inner).
    init(user desc: dnnl_memory_desc_t, inner wanted: dnnl_memory_desc_t, input: Bool, accumulate: Bool = false,
         inPlaceNeedsAlignment: Bool = false) {
        self.inPlaceNeedsAlignment = inPlaceNeedsAlignment
        user = DNNLMemory(desc, over: nil)
        let same = OneDNN.same(desc, wanted)
        if same && !accumulate {
            inner = user
            reorder = nil
        } else {
            inner = DNNLMemory(wanted)
            reorder = input ? .reorder(user, inner) : .reorder(inner, user, accumulate: accumulate)
        }
        overwrite = accumulate && !input ? .reorder(inner, user) : nil
        writesInPlace = accumulate && !input && same
        pending = input ? nil : reorder
    }

    var needsReorder: Bool { reorder != nil && !writesInPlace }

    /// For an accumulating output: whether a result for zeroed memory at `p` is written there directly.
    func writesInPlace(at p: UnsafeRawPointer) -> Bool {
        writesInPlace && (!inPlaceNeedsAlignment || Int(bitPattern: p) & 63 == 0)
    }

    /// Points the user view at `p` and, for an input, reorders it into the inner layout.
    @inline(__always) func load(_ p: UnsafeRawPointer, _ stream: dnnl_stream_t) {
        user.point(at: p)
        reorder?.run(stream)
    }

    /// Points the user view at `p` (before the primitive runs, for an output). `accumulate`
    /// false for an accumulating output: the memory at `p` is zero, so the result may be written.
    @inline(__always) func target(_ p: UnsafeRawPointer, accumulate: Bool = true) {
        user.point(at: p)
        guard overwrite != nil else { return }
        let direct = !accumulate && writesInPlace(at: p)
        if writesInPlace { inner.point(at: direct ? p : UnsafeRawPointer(inner.owned!)) }
        pending = accumulate ? reorder : direct ? nil : overwrite
    }

    /// For an output: brings the primitive's result into the user memory as `target` set up.
    @inline(__always) func store(_ stream: dnnl_stream_t) {
        pending?.run(stream)
    }
}

/// A oneDNN stream (one per kernel: streams are not shared between threads).
final class DNNLStream {
    let stream: dnnl_stream_t
    init() {
        var s: dnnl_stream_t?
        OneDNN.check(dnnl_stream_create(&s, OneDNN.engine, dnnl_stream_default_flags.rawValue), "stream")
        stream = s!
    }
    deinit { dnnl_stream_destroy(stream) }
    @inline(__always) func wait() { dnnl_stream_wait(stream) }
}

/// A tensor kept in a oneDNN format (e.g. convolution weights in OIhw16i16o) inside the flat
/// parameter store: only formats without padding, so it fills exactly its slot.
final class DNNLParameterLayout: ParameterLayout, @unchecked Sendable {
    let native: dnnl_memory_desc_t, canonical: dnnl_memory_desc_t
    let name: String

    /// nil when `native` is the canonical order itself, not blocked, or padded.
    init?(native: dnnl_memory_desc_t, canonical: dnnl_memory_desc_t, letters: String) {
        guard native.format_kind == dnnl_blocked, !OneDNN.same(native, canonical),
              OneDNN.bytes(native) == OneDNN.bytes(canonical) else { return nil }
        self.native = native; self.canonical = canonical
        name = OneDNN.formatName(native, letters: letters)
    }

    func toNative(_ canonical: UnsafePointer<Float>, _ native: UnsafeMutablePointer<Float>) {
        reorder(from: self.canonical, canonical, to: self.native, native)
    }

    func toCanonical(_ native: UnsafePointer<Float>, _ canonical: UnsafeMutablePointer<Float>) {
        reorder(from: self.native, native, to: self.canonical, canonical)
    }

    private func reorder(from: dnnl_memory_desc_t, _ source: UnsafePointer<Float>, to: dnnl_memory_desc_t,
                         _ destination: UnsafeMutablePointer<Float>) {
        let a = DNNLMemory(from, over: UnsafeMutableRawPointer(mutating: source)), b = DNNLMemory(to, over: destination)
        let stream = DNNLStream()
        DNNLPrimitive.reorder(a, b).run(stream.stream)
        stream.wait()
    }
}
