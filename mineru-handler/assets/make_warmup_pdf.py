"""Regenerates warmup.pdf: a one-page born-digital PDF (text layer, a heading, a table-like
grid of text) for the engine's warm-up parse. Run with the MinerU environment's Python, which
ships reportlab:  .venv/mineru/bin/python mineru-handler/assets/make_warmup_pdf.py
"""

import pathlib

if __name__ == "__main__":
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = pathlib.Path(__file__).with_name("warmup.pdf")
    c = canvas.Canvas(str(out), pagesize=A4, invariant=1, pageCompression=1)
    c.setTitle("mineru-handler warm-up")
    c.setFont("Helvetica-Bold", 16)
    c.drawString(72, 770, "Warm-up document")
    c.setFont("Helvetica", 11)
    y = 740
    for i in range(1, 13):
        c.drawString(72, y, f"Line {i}: a born-digital paragraph that exercises MinerU's text extraction.")
        y -= 16
    for row in range(4):
        for col in range(3):
            c.drawString(72 + col * 150, y - row * 16, f"cell {row}.{col}")
    c.showPage()
    c.save()
