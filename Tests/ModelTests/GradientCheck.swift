@testable import Model
import Support

/// Finite-difference gradient checking for one layer: L = Σ y·r for a fixed random r, so
/// dL/dy = r; compares backward's dx and parameter gradients against central differences.
struct GradientCheck {
    var layer: Layer
    var input: FeatureShape
    var batch: Int
    var mode: Mode = .train
    var eps: Float = 1e-2
    /// How many coordinates of x and of each parameter tensor to probe.
    var probes = 40
    var seed: UInt64 = 1
    /// Generates the input; default N(0, 1).
    var makeInput: ((inout RandomSource, Int) -> [Float])? = nil
    /// For piecewise-smooth layers (composites with ReLU inside, whose kinks no input choice
    /// avoids): differences at eps and eps/2; a coordinate whose two estimates disagree had a
    /// kink inside the step and is skipped (at most one or a quarter of them), the others use the
    /// Richardson estimate (4·D(eps/2) − D(eps))/3. (A kink much closer than eps/2 goes unseen:
    /// both estimates average the two slopes alike; seeds are chosen to avoid that.)
    var skipKinks = false
    /// Gradient norms (over the probed coordinates of one tensor) below this are compared in
    /// absolute terms: at eps = 1e-3 Float rounding makes differences noisy at about 1e-3, so a
    /// tensor whose true gradient is ~0 (a BatchNorm bias before another training-mode BatchNorm)
    /// cannot be checked relatively.
    var absoluteFloor = 1e-6
    /// Side input handed to the layer in `StepContext.metadata` ([batch, width]).
    var metadata: [Float]? = nil
    /// The activation layout offered to the layer (it must accept it). The check needs no
    /// conversions: x, y and r are just vectors, read and perturbed in whatever layout.
    var layout = ActivationLayout.planar

    struct Report: CustomStringConvertible {
        var name: String
        var relativeError: Double
        var worst: (index: Int, analytic: Float, numeric: Float)
        var description: String { "\(name): rel err \(relativeError) worst #\(worst.index) a=\(worst.analytic) n=\(worst.numeric)" }
    }

    func run() throws -> [Report] {
        var rng = RandomSource(seed: seed)
        let outShape = try layer.configure(input: input)
        if layout != .planar {
            let chosen = (layer as! LayoutNegotiating).negotiate(offered: layout, allowBlocked: true)
            precondition(chosen.input == layout, "\(layer.kind) does not read \(layout)")
        }
        let store = ParameterStore(parameterSpecs: layer.parameterSpecs, stateSpecs: layer.stateSpecs)
        layer.bind(ParameterBinding(parameters: store.slots.map { store.parameters + $0.range.lowerBound },
                                    gradients: store.slots.map { store.gradients + $0.range.lowerBound },
                                    state: store.stateSlots.map { store.state + $0.range.lowerBound }))
        layer.prepare(maxBatch: batch)
        // N(0, 0.25), but BatchNorm scales (γ: the 1-D "weight" tensors) around 1, as in a real network.
        for slot in store.slots {
            let isNormScale = slot.name.hasSuffix("weight") && slot.shape.count == 1
            for i in slot.range { store.parameters[i] = rng.nextGaussian() * 0.5 + (isNormScale ? 1 : 0) }
        }
        // BatchNorm running statistics: something other than the identity, for eval mode.
        for i in 0..<store.stateCount { store.state[i] = store.stateSlots[0].range.contains(i) ? rng.nextGaussian() * 0.3 : 0.5 + rng.nextFloat() }
        var x = makeInput?(&rng, batch * input.count) ?? (0..<batch * input.count).map { _ in rng.nextGaussian() }
        let r = (0..<batch * outShape.count).map { _ in rng.nextGaussian() }
        var y = [Float](repeating: 0, count: batch * outShape.count)
        var dx = [Float](repeating: 0, count: batch * input.count)
        var context = StepContext(seed: 7, step: 3)
        let meta = UnsafeMutablePointer<Float>.allocate(capacity: max(1, metadata?.count ?? 0))
        defer { meta.deallocate() }
        if let metadata {
            meta.initialize(from: metadata, count: metadata.count)
            context.metadata = UnsafePointer(meta)
        }
        let savedState = Array(store.stateBuffer)

        func loss() -> Double {
            // Forward must not see the running statistics it updated during earlier probes.
            for i in 0..<store.stateCount { store.state[i] = savedState[i] }
            x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { yb in
                layer.forward(xb.baseAddress!, yb.baseAddress!, batch: batch, mode: mode, context: context)
            } }
            var s = 0.0
            for i in 0..<y.count { s += Double(y[i]) * Double(r[i]) }
            return s
        }

        _ = loss()
        store.zeroGradients()
        x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in r.withUnsafeBufferPointer { rb in
            dx.withUnsafeMutableBufferPointer { db in
                layer.backward(x: xb.baseAddress!, y: yb.baseAddress!, dy: rb.baseAddress!, dx: db.baseAddress!, batch: batch, mode: mode)
            } } } }
        let analyticParams = Array(store.gradientBuffer)

        var reports: [Report] = []
        func check(name: String, count: Int, analytic: (Int) -> Float, perturb: (Int, Float) -> Void) {
            var idx: [Int] = count <= probes ? Array(0..<count) : (0..<probes).map { _ in rng.nextInt(below: count) }
            idx = Array(Set(idx)).sorted()
            var num2 = 0.0, diff2 = 0.0, ana2 = 0.0
            var worst = (index: 0, analytic: Float(0), numeric: Float(0)), worstErr = -1.0
            /// The loss with coordinate i moved by e.
            func lossAt(_ i: Int, _ e: Float) -> Double {
                perturb(i, e); let l = loss(); perturb(i, -e)
                return l
            }
            var skipped = 0
            for i in idx {
                let lp = lossAt(i, eps), lm = lossAt(i, -eps)
                var numeric = (lp - lm) / (2 * Double(eps))
                if skipKinks {
                    let half = (lossAt(i, eps / 2) - lossAt(i, -eps / 2)) / Double(eps)
                    if abs(numeric - half) > 0.05 * max(abs(numeric), abs(half)) + 1e-3 { skipped += 1; continue }
                    numeric = (4 * half - numeric) / 3
                }
                let a = Double(analytic(i))
                num2 += numeric * numeric; ana2 += a * a; diff2 += (a - numeric) * (a - numeric)
                let e = abs(a - numeric) / max(abs(a) + abs(numeric), 1e-3)
                if e > worstErr { worstErr = e; worst = (i, Float(a), Float(numeric)) }
            }
            var rel = diff2.squareRoot() / max(num2.squareRoot(), ana2.squareRoot(), absoluteFloor)
            if skipped > max(1, idx.count / 4) { rel = .infinity }   // too many kinks to judge
            reports.append(Report(name: name + (skipped > 0 ? " (\(skipped) of \(idx.count) probes at kinks)" : ""),
                                  relativeError: rel, worst: worst))
        }

        check(name: "\(layer.kind).dx", count: x.count, analytic: { dx[$0] }, perturb: { x[$0] += $1 })
        for slot in store.slots {
            check(name: "\(layer.kind).\(slot.name)", count: slot.range.count,
                  analytic: { analyticParams[slot.range.lowerBound + $0] },
                  perturb: { store.parameters[slot.range.lowerBound + $0] += $1 })
        }
        return reports
    }
}
