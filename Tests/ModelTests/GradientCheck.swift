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

    struct Report: CustomStringConvertible {
        var name: String
        var relativeError: Double
        var worst: (index: Int, analytic: Float, numeric: Float)
        var description: String { "\(name): rel err \(relativeError) worst #\(worst.index) a=\(worst.analytic) n=\(worst.numeric)" }
    }

    func run() throws -> [Report] {
        var rng = RandomSource(seed: seed)
        let outShape = try layer.configure(input: input)
        let store = ParameterStore(parameterSpecs: layer.parameterSpecs, stateSpecs: layer.stateSpecs)
        layer.bind(ParameterBinding(parameters: store.slots.map { store.parameters + $0.range.lowerBound },
                                    gradients: store.slots.map { store.gradients + $0.range.lowerBound },
                                    state: store.stateSlots.map { store.state + $0.range.lowerBound }))
        layer.prepare(maxBatch: batch)
        for i in 0..<store.count { store.parameters[i] = rng.nextGaussian() * 0.5 + (store.slots.first { $0.range.contains(i) }!.name == "weight" && layer.kind == "batchnorm2d" ? 1 : 0) }
        // BatchNorm running statistics: something other than the identity, for eval mode.
        for i in 0..<store.stateCount { store.state[i] = store.stateSlots[0].range.contains(i) ? rng.nextGaussian() * 0.3 : 0.5 + rng.nextFloat() }
        var x = makeInput?(&rng, batch * input.count) ?? (0..<batch * input.count).map { _ in rng.nextGaussian() }
        let r = (0..<batch * outShape.count).map { _ in rng.nextGaussian() }
        var y = [Float](repeating: 0, count: batch * outShape.count)
        var dx = [Float](repeating: 0, count: batch * input.count)
        let context = StepContext(seed: 7, step: 3)
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
            for i in idx {
                perturb(i, eps); let lp = loss()
                perturb(i, -2 * eps); let lm = loss()
                perturb(i, eps)
                let numeric = (lp - lm) / (2 * Double(eps))
                let a = Double(analytic(i))
                num2 += numeric * numeric; ana2 += a * a; diff2 += (a - numeric) * (a - numeric)
                let e = abs(a - numeric) / max(abs(a) + abs(numeric), 1e-3)
                if e > worstErr { worstErr = e; worst = (i, Float(a), Float(numeric)) }
            }
            let rel = diff2.squareRoot() / max(num2.squareRoot(), ana2.squareRoot(), 1e-6)
            reports.append(Report(name: name, relativeError: rel, worst: worst))
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
