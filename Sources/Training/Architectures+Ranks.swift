import Dist
import Model

extension Architectures {
    /// `spec`'s network on the convolution backend the `--conv-backend`, `--conv-algo` and
    /// `--conv-weights` options name, keeping its tensors in the same order on every rank of
    /// `comm`: ranks exchange raw parameter and gradient buffers, and oneDNN chooses its blocked
    /// weight formats per CPU, which may differ between hosts. When the ranks' choices differ,
    /// all of them keep OIHW (as `--conv-weights oihw`) and rank 0 calls `warn`.
    static func build(_ spec: ModelSpec, backend: String, algorithm: String, weights: String,
                      agreeingOn comm: Communicator, warn: (String) -> Void) throws -> Network {
        let net = try build(spec, backend: try ConvolutionBackends.named(backend, algorithm: algorithm, weights: weights))
        if try comm.agree(on: Array(net.store.layoutSignature.utf8)) { return net }
        if comm.rank == 0 {
            warn("the ranks' CPUs chose different oneDNN weight formats; keeping convolution weights in OIHW on every rank (as --conv-weights oihw)")
        }
        return try build(spec, backend: try ConvolutionBackends.named(backend, algorithm: algorithm, weights: "oihw"))
    }
}
