"""Regenerates the committed sample documents (no third-party content):

  sample.pdf   3 born-digital pages: headings, paragraphs, a ruled table and a raster image
  sample.docx  a heading, a paragraph, a picture and a 2x2 table
  sample.html  a small HTML page with a heading, a paragraph and a table

Run with the MinerU environment's Python (reportlab, python-docx and Pillow come with mineru):
  .venv/mineru/bin/python mineru-handler/assets/make_samples.py
"""

import io
import pathlib

if __name__ == "__main__":
    import docx
    from PIL import Image, ImageDraw
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = pathlib.Path(__file__).parent

    # A small chart-like picture, stored as JPEG to keep the files small.
    img = Image.new("RGB", (240, 160), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for i, h in enumerate([60, 110, 85, 140]):
        draw.rectangle([20 + i * 55, 150 - h, 60 + i * 55, 150], fill=(40 + i * 50, 90, 200 - i * 40))
    picture = io.BytesIO()
    img.save(picture, format="JPEG", quality=80)

    c = canvas.Canvas(str(out / "sample.pdf"), pagesize=A4, invariant=1, pageCompression=1)
    c.setTitle("mineru-handler sample")
    for p in range(1, 4):
        c.setFont("Helvetica-Bold", 18)
        c.drawString(72, 700, f"Chapter {p}: Quarterly Results")
        c.setFont("Helvetica", 11)
        y = 670
        for i in range(8):
            c.drawString(72, y, f"Sentence {i} of chapter {p} describes revenue, costs and the outlook.")
            y -= 16
        if p == 1:
            # A ruled 3x4 table.
            rows = [("Region", "Q1", "Q2"), ("North", "120", "135"), ("South", "98", "101"), ("West", "143", "150")]
            top, left, w, h = y - 20, 72, 120, 20
            c.setStrokeColor(colors.black)
            for r, row in enumerate(rows):
                for col, text in enumerate(row):
                    x0, y0 = left + col * w, top - r * h
                    c.rect(x0, y0 - h, w, h)
                    c.drawString(x0 + 6, y0 - 14, text)
        if p == 2:
            picture.seek(0)
            c.drawImage(ImageReader(picture), 72, y - 200, width=240, height=160)
            c.drawString(72, y - 215, "Figure 1: revenue by quarter.")
        c.showPage()
    c.save()

    picture.seek(0)
    d = docx.Document()
    d.add_heading("Quarterly Report", 1)
    d.add_paragraph("This is the first paragraph of the report.")
    d.add_picture(picture)
    t = d.add_table(rows=2, cols=2)
    for (r, col), text in {(0, 0): "Region", (0, 1): "Revenue", (1, 0): "North", (1, 1): "120"}.items():
        t.cell(r, col).text = text
    d.core_properties.author = "mineru-handler"
    d.save(out / "sample.docx")

    (out / "sample.html").write_text(
        "<!DOCTYPE html>\n<html><head><title>Sample</title></head><body>\n"
        "<h1>Hello HTML</h1>\n<p>Some paragraph text about the quarterly results.</p>\n"
        "<table><tr><th>Region</th><th>Q1</th></tr><tr><td>North</td><td>120</td></tr></table>\n"
        "</body></html>\n",
        encoding="utf-8",
    )
