import Foundation

/// Training curves from history.jsonl lines: loss (left) and accuracy (right) per epoch, training
/// in blue and validation in orange, with axes, ticks and a legend.
enum CurvesPlot {
    static let trainColour = RGB(hex: 0x1F77B4), valColour = RGB(hex: 0xFF7F0E)

    /// One panel per metric pair; epochs without a value are left out of that series.
    static func render(history: [[String: Any]], title: String = "training curves") -> Canvas {
        let lines = history.filter { $0["partial"] == nil }
        func series(_ key: String) -> [(Double, Double)] {
            lines.compactMap { h in
                guard let e = number(h["epoch"]), let v = number(h[key]), v.isFinite else { return nil }
                return (e, v)
            }
        }
        let panelW = 460, panelH = 320, top = 40, gap = 20
        var c = Canvas(width: 2 * panelW + 3 * gap, height: panelH + top + gap)
        c.text(title, x: c.width / 2, y: 10, .black, scale: 2, align: .center)
        let epochs = lines.compactMap { number($0["epoch"]) }
        let xRange = (epochs.min() ?? 1, max(epochs.max() ?? 1, (epochs.min() ?? 1) + 1))
        panel(&c, x: gap, y: top, width: panelW, height: panelH, title: "loss", xRange: xRange,
              series: [("train", trainColour, series("train_loss")), ("val", valColour, series("val_loss"))])
        panel(&c, x: 2 * gap + panelW, y: top, width: panelW, height: panelH, title: "accuracy", xRange: xRange,
              series: [("train", trainColour, series("train_acc")), ("val", valColour, series("val_acc"))])
        return c
    }

    /// A history value as a number (JSON numbers arrive as Int, Double or NSNumber).
    static func number(_ v: Any?) -> Double? {
        if let d = v as? Double { return d }
        if let i = v as? Int { return Double(i) }
        if let n = v as? NSNumber { return n.doubleValue }
        return nil
    }

    /// Tick values covering [lo, hi] with a 1-2-5 step, about `count` of them.
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> (values: [Double], step: Double) {
        let span = max(hi - lo, 1e-9)
        let raw = span / Double(max(count - 1, 1))
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        let first = floor(lo / step) * step, last = ceil(hi / step) * step
        let n = Int(((last - first) / step).rounded())
        return ((0...n).map { first + Double($0) * step }, step)
    }

    private static func panel(_ c: inout Canvas, x: Int, y: Int, width: Int, height: Int, title: String,
                              xRange: (Double, Double), series: [(String, RGB, [(Double, Double)])]) {
        let values = series.flatMap { $0.2.map(\.1) }
        let yt = ticks(values.min() ?? 0, values.max() ?? 1)
        let yLo = yt.values.first!, yHi = max(yt.values.last!, yLo + yt.step)
        let decimals = max(0, Int(-floor(log10(yt.step))))
        let labels = yt.values.map { String(format: "%.\(decimals)f", $0) }
        let left = x + (labels.map { BitmapFont.width($0) }.max() ?? 0) + 12, right = x + width - 8
        let plotTop = y + 22, plotBottom = y + height - 30
        c.text(title, x: (left + right) / 2, y: y + 4, .black, scale: 2, align: .center)
        func px(_ e: Double) -> Int { left + Int(((e - xRange.0) / (xRange.1 - xRange.0) * Double(right - left)).rounded()) }
        func py(_ v: Double) -> Int { plotBottom - Int(((v - yLo) / (yHi - yLo) * Double(plotBottom - plotTop)).rounded()) }
        for (v, l) in zip(yt.values, labels) {
            let yy = py(v)
            c.line(left, yy, right, yy, .lightGray)
            c.text(l, x: left - 6, y: yy - 3, .black, align: .right)
        }
        let xs = ticks(xRange.0, xRange.1, count: 8)
        for e in xs.values where e >= xRange.0 - 1e-9 && e <= xRange.1 + 1e-9 && e == e.rounded() {
            let xx = px(e)
            c.line(xx, plotBottom, xx, plotBottom + 4, .black)
            c.text(String(Int(e)), x: xx, y: plotBottom + 8, .black, align: .center)
        }
        c.text("epoch", x: (left + right) / 2, y: plotBottom + 19, .black, align: .center)
        c.line(left, plotTop, left, plotBottom, .black)
        c.line(left, plotBottom, right, plotBottom, .black)
        // The legend sits in the header row, right of the title, so it never hides a curve.
        var legendX = right
        for (name, colour, points) in series.reversed() where !points.isEmpty {
            for (a, b) in zip(points, points.dropFirst()) { c.line(px(a.0), py(a.1), px(b.0), py(b.1), colour, thickness: 2) }
            for p in points { c.fill(x: px(p.0) - 2, y: py(p.1) - 2, width: 5, height: 5, colour) }
            legendX -= BitmapFont.width(name)
            c.text(name, x: legendX, y: y + 8, .black)
            legendX -= 20
            c.fill(x: legendX, y: y + 10, width: 16, height: 3, colour)
            legendX -= 12
        }
    }
}
