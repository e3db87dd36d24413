import Testing
@testable import Training

@Suite struct PlotTests {
    @Test func viridisEndsAndMiddle() {
        #expect(Colormap.viridis(0) == RGB(hex: 0x440154))
        #expect(Colormap.viridis(1) == RGB(hex: 0xFDE725))
        #expect(Colormap.viridis(0.5) == RGB(hex: 0x21908C))
        #expect(Colormap.viridis(-3) == Colormap.viridis(0) && Colormap.viridis(.nan) == Colormap.viridis(0))
        // Lightness rises monotonically (a perceptual map keeps its order in gray).
        let l = stride(from: 0.0, through: 1, by: 0.05).map { Colormap.viridis($0).luminance }
        #expect(zip(l, l.dropFirst()).allSatisfy { $0 < $1 })
        #expect(Colormap.viridis(0).contrastingText == .white && Colormap.viridis(1).contrastingText == .black)
    }

    @Test func textDrawsGlyphPixels() {
        var c = Canvas(width: 40, height: 20)
        c.text("T1", x: 2, y: 3, .black, scale: 2)
        // "T": the top bar spans the glyph's five columns (10 pixels at scale 2), the stem is column 2.
        for x in 2..<12 { #expect(c.color(x, 3) == .black && c.color(x, 4) == .black) }
        #expect(c.color(6, 10) == .black && c.color(2, 10) == .white)
        #expect(BitmapFont.width("T1", scale: 2) == 22)
        // Vertical text reads upwards: the T's bar is its leftmost column, from y = 16 up.
        var v = Canvas(width: 20, height: 20)
        v.text("T", x: 2, y: 16, .black, vertical: true)
        for y in 12...16 { #expect(v.color(2, y) == .black) }
        #expect(v.color(3, 14) == .black && v.color(3, 12) == .white)
    }

    @Test func confusionMatrixCellsCarryTheirValue() {
        let counts: [[Int64]] = [[50, 0, 2], [5, 40, 5], [0, 10, 38]]
        let c = ConfusionMatrixPlot.render(counts: counts, names: ["cat", "dog", "bird"], normalized: false, title: "t")
        // Find the grid: the top-left cell is viridis(1) (the largest count).
        let top = Colormap.viridis(1), zero = Colormap.viridis(0)
        let hits = (0..<c.height).flatMap { y in (0..<c.width).map { ($0, y) } }.filter { c.color($0.0, $0.1) == top }
        #expect(!hits.isEmpty)
        let (x0, y0) = (hits.map(\.0).min()!, hits.map(\.1).min()!)
        var cell = 0
        while c.color(x0 + cell, y0) == top { cell += 1 }   // the run along the cell's top row
        #expect(cell >= 24)
        func at(_ i: Int, _ j: Int) -> RGB { c.color(x0 + j * cell + 1, y0 + i * cell + 1) }
        #expect(at(0, 1) == zero && at(1, 0) == Colormap.viridis(5.0 / 50) && at(2, 2) == Colormap.viridis(38.0 / 50))
        // Numbers are printed in the cells: white text on the dark zero cell.
        let zeroCell = (0..<cell).flatMap { dy in (0..<cell).map { c.color(x0 + cell + $0, y0 + dy) } }
        #expect(zeroCell.contains(.white))
        // Normalised: row 1 is 0.1, 0.8, 0.1.
        let n = ConfusionMatrixPlot.render(counts: counts, names: ["cat", "dog", "bird"], normalized: true, title: "t")
        #expect(n.pixels.count == n.width * n.height * 3)
        #expect(ClassificationMetrics(confusion: counts).normalizedConfusion[1] == [0.1, 0.8, 0.1])
    }

    @Test func curvesDrawBothSeries() {
        var history: [[String: Any]] = []
        for e in 1...4 {
            let d = Double(e)
            let line: [String: Any] = ["epoch": e, "train_loss": 2.0 / d, "val_loss": 2.2 / d, "train_acc": 0.2 * d, "val_acc": 0.18 * d]
            history.append(line)
        }
        let c = CurvesPlot.render(history: history)
        var blue = 0, orange = 0
        for y in 0..<c.height { for x in 0..<c.width {
            let p = c.color(x, y)
            if p == CurvesPlot.trainColour { blue += 1 } else if p == CurvesPlot.valColour { orange += 1 }
        } }
        #expect(blue > 200 && orange > 200)
        let t = CurvesPlot.ticks(0.13, 0.91)
        #expect(t.step == 0.2 && t.values.first == 0 && abs(t.values.last! - 1) < 1e-12)
    }

    @Test func flipMirrorsRows() {
        var x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]   // 2 planes of 3×3
        x.withUnsafeMutableBufferPointer { Evaluation.flipHorizontally($0.baseAddress!, count: 2, size: 3) }
        #expect(x == [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10, 15, 14, 13, 18, 17, 16])
    }
}
