//! The `tarball_b64` transport: every artefact in a tar.gz or zip with normalised metadata,
//! written to a file in the job directory, then base64-encoded straight into the response
//! string. The raw archive never sits in memory, and an archive whose encoding would already
//! exceed the response cap is rejected before it is encoded.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::degraded::{Degraded, DegradedReason};
use super::error::PackageError;
use super::formats::ArchiveFormat;
use super::members::{ResultArchive, Role};

/// Writes the archive of every artefact to `dest`; returns its size in bytes. Usable by any
/// transport that ships the archive (base64 or an object store).
pub(crate) fn write_archive(
    result: &mut ResultArchive,
    basename: &str,
    format: ArchiveFormat,
    mtime: SystemTime,
    dest: &Path,
    degraded: &mut Degraded,
) -> Result<u64, PackageError> {
    let markdown = result
        .find(&Role::Markdown)
        .ok_or_else(|| PackageError::markdown_missing(basename))?;
    let file = BufWriter::new(File::create(dest).map_err(PackageError::Archive)?);
    let mut writer = match format {
        ArchiveFormat::TarGz => {
            let gzip = GzipWriter::new(file).map_err(PackageError::Archive)?;
            let mut builder = tar::Builder::new(gzip);
            builder.mode(tar::HeaderMode::Deterministic);
            Writer::Tar(builder)
        }
        ArchiveFormat::Zip => Writer::Zip(Box::new(zip::ZipWriter::new(file))),
    };
    let seconds = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for member in result.members.clone() {
        let bytes = match result.read(&member) {
            Ok(bytes) => bytes,
            Err(e) if member.index == markdown.index => {
                return Err(PackageError::markdown_unreadable(&member.output_name, &e));
            }
            Err(e) => {
                degraded.push(
                    None,
                    super::members::file_name(&member.output_name),
                    DegradedReason::Unreadable,
                    Some(io_error_type(&e)),
                );
                continue;
            }
        };
        if member.role == Role::Markdown && std::str::from_utf8(&bytes).is_err() {
            return Err(PackageError::markdown_not_utf8(&member.output_name));
        }
        let compressed = matches!(member.role, Role::Image(_));
        writer.append(&member.output_name, &bytes, seconds, compressed)?;
    }
    writer.finish()?;
    Ok(std::fs::metadata(dest)
        .map_err(PackageError::Archive)?
        .len())
}

enum Writer {
    Tar(tar::Builder<GzipWriter<BufWriter<File>>>),
    Zip(Box<zip::ZipWriter<BufWriter<File>>>),
}

impl Writer {
    fn append(
        &mut self,
        name: &str,
        bytes: &[u8],
        mtime: u64,
        already_compressed: bool,
    ) -> Result<(), PackageError> {
        match self {
            Writer::Tar(builder) => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(mtime);
                builder
                    .get_mut()
                    .set_stored(already_compressed)
                    .map_err(PackageError::Archive)?;
                builder
                    .append_data(&mut header, name, bytes)
                    .map_err(PackageError::Archive)
            }
            Writer::Zip(zip) => {
                let method = if already_compressed {
                    zip::CompressionMethod::Stored
                } else {
                    zip::CompressionMethod::Deflated
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(method)
                    .unix_permissions(0o644)
                    .last_modified_time(zip_time(mtime));
                zip.start_file(name, options).map_err(zip_error)?;
                zip.write_all(bytes).map_err(PackageError::Archive)
            }
        }
    }

    fn finish(self) -> Result<(), PackageError> {
        match self {
            Writer::Tar(builder) => {
                let gz = builder.into_inner().map_err(PackageError::Archive)?;
                let mut file = gz.finish().map_err(PackageError::Archive)?;
                file.flush().map_err(PackageError::Archive)
            }
            Writer::Zip(zip) => {
                let mut file = zip.finish().map_err(zip_error)?;
                file.flush().map_err(PackageError::Archive)
            }
        }
    }
}

/// The deflate level for markdown and JSON members (gzip's default).
const TEXT_LEVEL: Compression = Compression::new(6);

/// A gzip stream (RFC 1952) that stores tar members which are already compressed (images)
/// and deflates the rest, as the zip container does: deflating images gains nothing and, at
/// level 6, ran at under 20 MB/s on a 2-core machine; stored they go at copy speed.
///
/// `flate2`'s `GzEncoder` has one level for the whole stream, so two raw deflate encoders take
/// turns: a deflate stream may be spliced from pieces that each end in a full flush (byte
/// aligned, not final, no back-references across the cut), which is how `pigz` works.
struct GzipWriter<W: Write> {
    inner: W,
    text: Compress,
    stored: Compress,
    storing: bool,
    crc: Crc,
    out: Vec<u8>,
}

/// Magic, deflate, no flags, no mtime, no extra flags, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl<W: Write> GzipWriter<W> {
    fn new(mut inner: W) -> std::io::Result<Self> {
        inner.write_all(&GZIP_HEADER)?;
        Ok(GzipWriter {
            inner,
            text: Compress::new(TEXT_LEVEL, false),
            stored: Compress::new(Compression::none(), false),
            storing: false,
            crc: Crc::new(),
            out: Vec::with_capacity(64 * 1024),
        })
    }

    /// Whether what is written next is stored rather than deflated.
    fn set_stored(&mut self, stored: bool) -> std::io::Result<()> {
        if stored != self.storing {
            self.deflate(&[], FlushCompress::Full)?;
            self.storing = stored;
        }
        Ok(())
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> std::io::Result<()> {
        let encoder = if self.storing {
            &mut self.stored
        } else {
            &mut self.text
        };
        loop {
            self.out.clear();
            let before = encoder.total_in();
            let status = encoder
                .compress_vec(input, &mut self.out, flush)
                .map_err(std::io::Error::other)?;
            let consumed =
                usize::try_from(encoder.total_in() - before).map_err(std::io::Error::other)?;
            input = &input[consumed..];
            self.inner.write_all(&self.out)?;
            // Done once the input is consumed and the encoder had room to spare (nothing is
            // left pending), or, when finishing, at the stream's end.
            let drained = input.is_empty() && self.out.len() < self.out.capacity();
            match flush {
                FlushCompress::Finish if status == Status::StreamEnd => return Ok(()),
                FlushCompress::Finish => {}
                _ if drained => return Ok(()),
                _ => {}
            }
        }
    }

    /// Ends the deflate stream and writes the trailer (CRC-32 and size modulo 2³²).
    fn finish(mut self) -> std::io::Result<W> {
        self.deflate(&[], FlushCompress::Finish)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.crc.update(data);
        self.deflate(data, FlushCompress::None)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.deflate(&[], FlushCompress::Sync)?;
        self.inner.flush()
    }
}

fn zip_error(e: zip::result::ZipError) -> PackageError {
    PackageError::Archive(std::io::Error::other(e))
}

fn io_error_type(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::InvalidData => "BadZipFile".into(),
        std::io::ErrorKind::PermissionDenied => "PermissionError".into(),
        _ => "OSError".into(),
    }
}

/// Base64 of the archive file, refusing before encoding when the result would not fit.
pub(crate) fn encode_file(
    path: &Path,
    bytes: u64,
    max_response_bytes: u64,
    transport: &str,
) -> Result<String, PackageError> {
    let encoded = encoded_len(bytes);
    if encoded > max_response_bytes {
        return Err(PackageError::TooLarge {
            bytes: encoded,
            limit: max_response_bytes,
            transport: transport.to_owned(),
        });
    }
    let capacity = usize::try_from(encoded).map_err(|_| PackageError::TooLarge {
        bytes: encoded,
        limit: max_response_bytes,
        transport: transport.to_owned(),
    })?;
    let mut writer = base64::write::EncoderStringWriter::from_consumer(
        String::with_capacity(capacity),
        &STANDARD,
    );
    let mut file = File::open(path).map_err(PackageError::Archive)?;
    std::io::copy(&mut file, &mut writer).map_err(PackageError::Archive)?;
    Ok(writer.into_inner())
}

/// A zip timestamp for a Unix time, in UTC (zip cannot store dates before 1980).
fn zip_time(unix_seconds: u64) -> zip::DateTime {
    let Some(utc) = i64::try_from(unix_seconds)
        .ok()
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC))
    else {
        return zip::DateTime::default();
    };
    let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
        u16::try_from(utc.year()),
        u8::try_from(utc.month()),
        u8::try_from(utc.day()),
        u8::try_from(utc.hour()),
        u8::try_from(utc.minute()),
        u8::try_from(utc.second()),
    ) else {
        return zip::DateTime::default();
    };
    zip::DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
}

/// The base64 length of `bytes` bytes: `4 × ceil(bytes / 3)`.
fn encoded_len(bytes: u64) -> u64 {
    bytes.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        let parts = |t: zip::DateTime| {
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
            )
        };
        // 2026-11-21 06:04:05 UTC; zip keeps seconds in steps of two.
        assert_eq!(parts(zip_time(1_795_241_045)), (2026, 11, 21, 6, 4, 4));
        // A leap day, and a time zip cannot store (before 1980) falling back to its default.
        assert_eq!(parts(zip_time(951_782_400)), (2000, 2, 29, 0, 0, 0));
        assert_eq!(parts(zip_time(0)), parts(zip::DateTime::default()));
    }

    #[test]
    fn gzip_round_trips_across_stored_and_deflated_runs() {
        use std::io::Read;
        // Incompressible bytes (stored) between runs of text (deflated), each larger than the
        // output buffer, so every loop of the writer runs.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let text = "{\"type\": \"text\", \"content\": \"born-digital\"}\n".repeat(20_000);
        let mut gzip = GzipWriter::new(Vec::new()).unwrap();
        let mut expected = Vec::new();
        // The same text twice: a back-reference across a cut would decode wrongly.
        for (stored, bytes) in [
            (false, text.as_bytes()),
            (true, &noise[..]),
            (true, &noise[..]),
            (false, text.as_bytes()),
        ] {
            gzip.set_stored(stored).unwrap();
            gzip.write_all(bytes).unwrap();
            expected.extend_from_slice(bytes);
        }
        let compressed = gzip.finish().unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == expected, "round trip differs");
        // The noise is stored (a few header bytes per 64 KiB block), the text deflated.
        let stored = 2 * noise.len();
        assert!(
            compressed.len() < stored + stored / 100,
            "{}",
            compressed.len()
        );
        assert!(compressed.len() > stored, "{}", compressed.len());
    }
}
