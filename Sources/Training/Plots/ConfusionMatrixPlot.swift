import Foundation

/// A confusion matrix as a picture: one cell per (true, predicted) pair coloured with viridis
/// by its value, the value printed in the cell (black or white, whichever reads better), class
/// names on both axes (predicted names written upwards under the columns), a title and a
/// colour bar.
enum ConfusionMatrixPlot {
    static let maxNameLength = 24

    /// `counts` rows are true classes. `normalized` divides each row by its support and prints
    /// fractions; otherwise counts are printed and coloured relative to the largest cell.
    static func render(counts: [[Int64]], names: [String], normalized: Bool, title: String) -> Canvas {
        let k = counts.count
        let values: [[Double]] = normalized
            ? ClassificationMetrics(confusion: counts).normalizedConfusion
            : counts.map { $0.map(Double.init) }
        let maxValue = normalized ? 1 : max(1, values.flatMap { $0 }.max() ?? 1)
        func label(_ v: Double) -> String { normalized ? String(format: "%.2f", v) : String(Int64(v)) }
        let s = k <= 12 ? 2 : 1                       // font scale
        let cellText = values.flatMap { $0 }.map { BitmapFont.width(label($0), scale: s) }.max() ?? 0
        let cell = max(cellText + 10, BitmapFont.lineHeight * s + 12, 16)
        let shown = names.map { $0.count > maxNameLength ? String($0.prefix(maxNameLength - 1)) + "~" : $0 }
        let nameWidth = shown.map { BitmapFont.width($0, scale: s) }.max() ?? 0
        let pad = 10, lh = BitmapFont.lineHeight * s
        let titleScale = 2, titleHeight = BitmapFont.lineHeight * titleScale
        let gridX = pad + lh + pad + nameWidth + pad
        let gridY = pad + titleHeight + pad
        let grid = k * cell
        let barX = gridX + grid + 2 * pad, barWidth = 16
        let barLabels = [label(0), label(maxValue)]
        let width = max(barX + barWidth + pad / 2 + (barLabels.map { BitmapFont.width($0, scale: s) }.max() ?? 0) + pad,
                        gridX + BitmapFont.width(title, scale: titleScale) / 2 + grid / 2 + pad)
        let height = gridY + grid + pad / 2 + nameWidth + pad + lh + pad
        var c = Canvas(width: width, height: height)

        c.text(title, x: min(gridX + grid / 2, width - BitmapFont.width(title, scale: titleScale) / 2 - pad),
               y: pad, .black, scale: titleScale, align: .center)
        for i in 0..<k {
            for j in 0..<k {
                let v = values[i][j]
                let colour = Colormap.viridis(v / maxValue)
                c.fill(x: gridX + j * cell, y: gridY + i * cell, width: cell, height: cell, colour)
                c.text(label(v), x: gridX + j * cell + cell / 2, y: gridY + i * cell + (cell - BitmapFont.capHeight * s) / 2,
                       colour.contrastingText, scale: s, align: .center)
            }
            // True class names right-aligned left of the rows, predicted names upwards under the columns.
            c.text(shown[i], x: gridX - pad, y: gridY + i * cell + (cell - BitmapFont.capHeight * s) / 2, .black,
                   scale: s, align: .right)
            c.text(shown[i], x: gridX + i * cell + (cell - BitmapFont.capHeight * s) / 2, y: gridY + grid + pad / 2, .black,
                   scale: s, align: .right, vertical: true)
        }
        c.rectangle(x: gridX - 1, y: gridY - 1, width: grid + 2, height: grid + 2, .gray)
        c.text("predicted class", x: gridX + grid / 2, y: height - pad - lh + s, .black, scale: s, align: .center)
        c.text("true class", x: pad, y: gridY + grid / 2, .black, scale: s, align: .center, vertical: true)
        // Colour bar: maxValue at the top, 0 at the bottom.
        for y in 0..<grid {
            c.fill(x: barX, y: gridY + y, width: barWidth, height: 1, Colormap.viridis(1 - Double(y) / Double(max(grid - 1, 1))))
        }
        c.rectangle(x: barX - 1, y: gridY - 1, width: barWidth + 2, height: grid + 2, .gray)
        c.text(barLabels[1], x: barX + barWidth + pad / 2, y: gridY, .black, scale: s)
        c.text(barLabels[0], x: barX + barWidth + pad / 2, y: gridY + grid - BitmapFont.capHeight * s, .black, scale: s)
        return c
    }
}
