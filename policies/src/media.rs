//! Images lose their hidden metadata before they reach a case room or a client: EXIF (camera,
//! time, GPS position), XMP and IPTC can tell where a client lives or hides. [`clean`] is the one
//! rule, for files in both directions; the record keeps the original.
//!
//! The real type comes from the bytes, never from the declared MIME type alone: a JPEG sent as
//! `application/octet-stream` or `image/gif` carries its GPS all the same. How each type is
//! cleaned:
//!
//! | type | how | what goes |
//! | --- | --- | --- |
//! | JPEG | segments rewritten, pixels untouched | APP1 (EXIF, XMP), APP13 (IPTC), COM, every other APPn but JFIF, ICC profile and Adobe; anything after the end marker (phones append further pictures there, each with its own EXIF) |
//! | PNG | chunks kept from a list, pixels untouched | eXIf, tEXt/zTXt/iTXt (XMP, IPTC), tIME and any chunk not on the list |
//! | WebP | chunks kept from a list, pixels untouched | EXIF, XMP and unknown chunks; their VP8X flags |
//! | GIF | blocks rewritten (LZW data copied), pixels untouched | comment, plain-text and application extensions (XMP) but looping |
//! | TIFF | re-encoded (first and only page) | every tag but the pixels' layout: EXIF, GPS, XMP and IPTC live in the same IFDs as the pixels |
//! | HEIC/HEIF/AVIF | metadata items zeroed in place, offsets unchanged | Exif, XMP (`mime`) and `uri ` items' bytes |
//! | BMP | as it came | (no metadata) |
//!
//! Everything else that is an image, or says it is one, is withheld (a notice instead): a
//! multi-page TIFF, HEIF with parts this does not know, JPEG XL, JPEG 2000, PSD, SVG, damaged
//! files. No decoding of HEVC or AV1 is needed, which pure Rust cannot do.

use std::collections::HashSet;
use std::io::Cursor;
use std::ops::Range;

use img_parts::{png, riff::RiffContent, webp, Bytes};

/// What may be shown of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Not an image, or one that cannot hold metadata (BMP): the bytes as they came.
    Unchanged,
    /// The image without its metadata (the same bytes when it had none), of the type it was.
    Clean(Vec<u8>),
    /// An image that could not be cleaned: never shown; a notice says why (`reason` completes
    /// "it could not be cleaned: …"), and the record keeps the original.
    Withheld { reason: String },
}

/// The one rule for every file that reaches a case room or goes out to a client: see the module
/// documentation for what each image type loses.
pub fn clean(declared_mime: &str, data: &[u8]) -> Cleaned {
    let declared_image = declared_mime
        .trim()
        .to_ascii_lowercase()
        .starts_with("image/");
    let result = match sniff(data) {
        None if declared_image => {
            Err("its bytes are not an image type the bridge can check".into())
        }
        None | Some(Kind::Bmp) => return Cleaned::Unchanged,
        Some(Kind::Unsupported(name)) => Err(format!("{name} images cannot be checked yet")),
        Some(Kind::Jpeg) => clean_jpeg(data),
        Some(Kind::Png) => clean_png(data),
        Some(Kind::WebP) => clean_webp(data),
        Some(Kind::Gif) => clean_gif(data),
        Some(Kind::Tiff) => clean_tiff(data),
        Some(Kind::Heif) => clean_heif(data),
    };
    match result.and_then(safety_net) {
        Ok(bytes) => Cleaned::Clean(bytes),
        Err(reason) => Cleaned::Withheld { reason },
    }
}

/// Whatever a format's cleaning missed in a place it does not know of: these markers open every
/// XMP packet, and EXIF blocks in JPEG, WebP and most HEIF files (the header and the TIFF byte
/// order mark: HEIF's item list names the type "Exif" alone). Compressed pixels do not hold them
/// by chance.
fn safety_net(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if found(b"http://ns.adobe.com/xap/1.0/")
        || found(b"<x:xmpmeta")
        || found(b"Exif\0\0MM\0*")
        || found(b"Exif\0\0II*\0")
    {
        return Err("metadata was left in a place the bridge does not know".into());
    }
    Ok(bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jpeg,
    Png,
    Gif,
    WebP,
    Tiff,
    Heif,
    Bmp,
    /// Image types that can carry metadata which this does not clean.
    Unsupported(&'static str),
}

/// The type by the file's magic bytes.
fn sniff(d: &[u8]) -> Option<Kind> {
    let at = |offset: usize, magic: &[u8]| d.get(offset..offset + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        Some(Kind::Jpeg)
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some(Kind::Gif)
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some(Kind::WebP)
    } else if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        Some(Kind::Tiff)
    } else if at(4, b"ftyp") {
        heif_brand(d).then_some(Kind::Heif)
    } else if at(0, b"BM") && d.len() >= 26 {
        Some(Kind::Bmp)
    } else if at(0, &[0xFF, 0x0A]) || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        Some(Kind::Unsupported("JPEG XL"))
    } else if at(0, b"\0\0\0\x0cjP  \r\n\x87\n") || at(0, &[0xFF, 0x4F, 0xFF, 0x51]) {
        Some(Kind::Unsupported("JPEG 2000"))
    } else if at(0, b"8BPS") {
        Some(Kind::Unsupported("Photoshop"))
    } else {
        None
    }
}

/// Whether an ISOBMFF file (MP4's container) is a still image (HEIF: HEIC, AVIF) by its brands;
/// videos are other files.
fn heif_brand(d: &[u8]) -> bool {
    const BRANDS: [&[u8; 4]; 12] = [
        b"mif1", b"mif2", b"msf1", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"avif",
        b"avis", b"avio",
    ];
    let size = d
        .get(0..4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let Some(ftyp) = d.get(8..size.min(d.len())) else {
        return false;
    };
    // Major brand, minor version, then compatible brands.
    ftyp.chunks_exact(4)
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .any(|(_, brand)| BRANDS.iter().any(|b| &b[..] == brand))
}

/// JPEG, walked segment by segment, kept segments copied as they are. By hand rather than with
/// `img-parts`, which keeps everything after the first scan header as one block: later segments
/// and whatever follows the end marker would pass unchecked.
fn clean_jpeg(d: &[u8]) -> Result<Vec<u8>, String> {
    let damaged = || "it cannot be read as a JPEG image".to_owned();
    let mut out = vec![0xFF, 0xD8];
    let mut i = 2;
    let mut scans = 0;
    loop {
        if d.get(i) != Some(&0xFF) {
            return Err(damaged());
        }
        while d.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *d.get(i).ok_or_else(damaged)?;
        i += 1;
        match marker {
            // The end: a phone's further pictures (MPF) after it go, with their own EXIF.
            0xD9 if scans > 0 => {
                out.extend([0xFF, 0xD9]);
                return Ok(out);
            }
            0xD0..=0xD7 | 0x01 => out.extend([0xFF, marker]),
            0x00 | 0xD8 | 0xD9 => return Err(damaged()),
            _ => {
                let len = d
                    .get(i..i + 2)
                    .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
                    .filter(|&l| l >= 2 && i + l <= d.len())
                    .ok_or_else(damaged)?;
                if keep_jpeg_segment(marker, &d[i + 2..i + len]) {
                    out.extend([0xFF, marker]);
                    out.extend(&d[i..i + len]);
                }
                i += len;
                if marker == 0xDA {
                    scans += 1;
                    // Entropy-coded data runs to the next marker that is neither a stuffed
                    // 0xFF nor a restart marker.
                    let start = i;
                    while i < d.len() {
                        if d[i] == 0xFF {
                            match d.get(i + 1) {
                                Some(0x00 | 0xD0..=0xD7) => i += 2,
                                _ => break,
                            }
                        } else {
                            i += 1;
                        }
                    }
                    out.extend(&d[start..i]);
                }
            }
        }
    }
}

/// Tables, frame and scan headers stay; of the application segments only those that change
/// how the pixels look (JFIF, the colour profile, Adobe's colour transform).
fn keep_jpeg_segment(marker: u8, payload: &[u8]) -> bool {
    match marker {
        0xE0 => payload.starts_with(b"JFIF\0") || payload.starts_with(b"JFXX\0"),
        0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
        0xEE => payload.starts_with(b"Adobe"),
        0xE1..=0xEF | 0xFE => false,
        _ => true,
    }
}

/// PNG: critical chunks and the ancillary ones that say how the pixels look (colour, gamma,
/// transparency, density, animation); text chunks (which hold XMP and IPTC), eXIf, tIME and any
/// private chunk go.
fn clean_png(d: &[u8]) -> Result<Vec<u8>, String> {
    const KEEP: [&[u8; 4]; 19] = [
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
        b"cICP", b"mDCV", b"cLLI", b"bKGD", b"hIST", b"pHYs", b"acTL", b"fcTL", b"fdAT",
    ];
    let mut image = png::Png::from_bytes(Bytes::copy_from_slice(d))
        .map_err(|_| "it cannot be read as a PNG image".to_owned())?;
    image
        .chunks_mut()
        .retain(|c| KEEP.iter().any(|k| **k == c.kind()));
    if image.chunk_by_type(*b"IDAT").is_none() {
        return Err("it cannot be read as a PNG image".into());
    }
    Ok(image.encoder().bytes().to_vec())
}

/// WebP: image data, alpha, animation and colour profile chunks stay; the VP8X header's flags
/// for EXIF and XMP are cleared with them.
fn clean_webp(d: &[u8]) -> Result<Vec<u8>, String> {
    const KEEP: [&[u8; 4]; 7] = [
        b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
    ];
    const EXIF_AND_XMP_FLAGS: u8 = 0b0000_1100;
    let mut image = webp::WebP::from_bytes(Bytes::copy_from_slice(d))
        .map_err(|_| "it cannot be read as a WebP image".to_owned())?;
    image
        .chunks_mut()
        .retain(|c| KEEP.iter().any(|k| **k == c.id()));
    for chunk in image.chunks_mut() {
        if &chunk.id() == b"VP8X" {
            if let RiffContent::Data(data) = chunk.content_mut() {
                let mut flags = data.to_vec();
                if let Some(first) = flags.first_mut() {
                    *first &= !EXIF_AND_XMP_FLAGS;
                }
                *data = Bytes::from(flags);
            }
        }
    }
    if !image
        .chunks()
        .iter()
        .any(|c| matches!(&c.id(), b"VP8 " | b"VP8L" | b"ANMF"))
    {
        return Err("it cannot be read as a WebP image".into());
    }
    Ok(image.encoder().bytes().to_vec())
}

/// GIF: the `gif` crate reads the frames without decoding them and writes them again; what it
/// does not write back is what goes (comments, plain text, XMP and other application
/// extensions). Looping stays.
fn clean_gif(d: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |_| "it cannot be read as a GIF image".to_owned();
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    let mut decoder = options.read_info(d).map_err(failed)?;
    let palette = decoder.global_palette().unwrap_or_default().to_vec();
    let encode = |e: gif::EncodingError| format!("it could not be written again as a GIF: {e}");
    let mut encoder = gif::Encoder::new(Vec::new(), decoder.width(), decoder.height(), &palette)
        .map_err(encode)?;
    // Without a looping extension the decoder says Finite(0), which written out would mean
    // "forever".
    if decoder.repeat() != gif::Repeat::Finite(0) {
        encoder.set_repeat(decoder.repeat()).map_err(encode)?;
    }
    let mut frames = 0;
    while let Some(frame) = decoder.read_next_frame().map_err(failed)? {
        encoder.write_lzw_pre_encoded_frame(frame).map_err(encode)?;
        frames += 1;
    }
    if frames == 0 {
        return Err("it cannot be read as a GIF image".into());
    }
    encoder.into_inner().map_err(encode)
}

/// TIFF: decoded and written again, turned as its orientation tag said (the tag goes with the
/// rest). Only single-page files: the rest of a multi-page document would silently go missing.
fn clean_tiff(d: &[u8]) -> Result<Vec<u8>, String> {
    use image::ImageDecoder;
    if tiff_has_more_pages(d).ok_or("it cannot be read as a TIFF image")? {
        return Err("it has several pages, and only single-page TIFF images can be cleaned".into());
    }
    let failed = |e: image::ImageError| format!("it cannot be read as a TIFF image: {e}");
    let mut decoder = image::codecs::tiff::TiffDecoder::new(Cursor::new(d)).map_err(failed)?;
    let orientation = decoder.orientation().map_err(failed)?;
    let mut pixels = image::DynamicImage::from_decoder(decoder).map_err(failed)?;
    pixels.apply_orientation(orientation);
    let mut out = Cursor::new(Vec::new());
    pixels
        .write_to(&mut out, image::ImageFormat::Tiff)
        .map_err(|e| format!("it could not be written again as a TIFF: {e}"))?;
    Ok(out.into_inner())
}

/// Whether the first IFD points to another (classic TIFF and BigTIFF); `None` when the header
/// or the first IFD is out of the file.
fn tiff_has_more_pages(d: &[u8]) -> Option<bool> {
    let little = d.get(0..2)? == b"II";
    let int = |at: usize, n: usize| -> Option<u64> {
        let b = d.get(at..at.checked_add(n)?)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if little { b[n - 1 - i] } else { b[i] };
            v = v << 8 | u64::from(byte);
        }
        Some(v)
    };
    let big = int(2, 2)? == 43;
    let (ifd, count_size, entry_size, offset_size) = if big {
        (int(8, 8)?, 8, 20, 8)
    } else {
        (int(4, 4)?, 2, 12, 4)
    };
    let ifd = usize::try_from(ifd).ok()?;
    let entries = usize::try_from(int(ifd, count_size)?).ok()?;
    let next_at = ifd
        .checked_add(count_size)?
        .checked_add(entries.checked_mul(entry_size)?)?;
    Some(int(next_at, offset_size)? != 0)
}

/// One box of an ISOBMFF file: its type and where its contents are.
struct IsoBox {
    kind: [u8; 4],
    body: Range<usize>,
}

/// The boxes in `range` of `d`, in order; `None` when one runs past the end.
fn iso_boxes(d: &[u8], range: Range<usize>) -> Option<Vec<IsoBox>> {
    let mut out = Vec::new();
    let mut i = range.start;
    while i < range.end {
        let u32_at = |at: usize| -> Option<u64> {
            let b = d.get(at..at + 4)?;
            Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        };
        let size = u32_at(i)?;
        let kind: [u8; 4] = d.get(i + 4..i + 8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, (range.end - i) as u64),
            1 => (16, u32_at(i + 8)? << 32 | u32_at(i + 12)?),
            n => (8, n),
        };
        let header = if &kind == b"uuid" {
            header + 16
        } else {
            header
        };
        let end = i.checked_add(usize::try_from(size).ok()?)?;
        if size < header as u64 || end > range.end {
            return None;
        }
        out.push(IsoBox {
            kind,
            body: i + header..end,
        });
        i = end;
    }
    Some(out)
}

/// HEIF (HEIC, AVIF): Exif, XMP and URI items are metadata beside the picture items; their bytes
/// are overwritten with zeros where they lie, so no offset in the file changes. A file with
/// parts this does not know (a sequence's tracks, boxes holding XML) is refused whole.
fn clean_heif(d: &[u8]) -> Result<Vec<u8>, String> {
    let damaged = || "it cannot be read as a HEIF image".to_owned();
    let mut meta = None;
    for b in iso_boxes(d, 0..d.len()).ok_or_else(damaged)? {
        match &b.kind {
            b"ftyp" | b"mdat" | b"free" | b"skip" | b"wide" => {}
            b"meta" if meta.is_none() => meta = Some(b),
            other => return Err(unknown_part(other)),
        }
    }
    let meta = meta.ok_or_else(damaged)?;
    // meta is a FullBox: version and flags first.
    let (mut iinf, mut iloc, mut idat) = (None, None, None);
    let children = iso_boxes(d, meta.body.start + 4..meta.body.end).ok_or_else(damaged)?;
    for b in children {
        match &b.kind {
            b"hdlr" | b"pitm" | b"iref" | b"iprp" | b"dinf" | b"grpl" | b"free" | b"skip" => {}
            b"iinf" if iinf.is_none() => iinf = Some(b.body),
            b"iloc" if iloc.is_none() => iloc = Some(b.body),
            b"idat" if idat.is_none() => idat = Some(b.body),
            other => return Err(unknown_part(other)),
        }
    }
    let metadata = match iinf {
        Some(body) => heif_metadata_items(d, body).ok_or_else(damaged)?,
        None => HashSet::new(),
    };
    let mut out = d.to_vec();
    if metadata.is_empty() {
        return Ok(out);
    }
    let iloc = iloc.ok_or_else(damaged)?;
    for location in heif_locations(d, iloc).ok_or_else(damaged)? {
        if !metadata.contains(&location.item) {
            continue;
        }
        // Data in another file, or made of another item's data: not something to zero here.
        if location.data_reference != 0 {
            return Err("its metadata is kept outside the file".into());
        }
        let area = match (location.method, &idat) {
            (0, _) => 0..d.len(),
            (1, Some(idat)) => idat.clone(),
            _ => return Err("its metadata is stored in a way the bridge cannot clean".into()),
        };
        for (offset, length) in location.extents {
            let start = (area.start as u64)
                .checked_add(location.base)
                .and_then(|s| s.checked_add(offset))
                .ok_or_else(damaged)?;
            let end = start.checked_add(length).ok_or_else(damaged)?;
            // A zero length means "to the end", which cannot be told apart from the picture.
            if length == 0 || end > area.end as u64 {
                return Err(damaged());
            }
            out[start as usize..end as usize].fill(0);
        }
    }
    Ok(out)
}

fn unknown_part(kind: &[u8; 4]) -> String {
    format!(
        "it has a part ({}) the bridge cannot check",
        String::from_utf8_lossy(kind)
    )
}

/// The ids of the items in `iinf` that are metadata: Exif, MIME-typed content (XMP is
/// `application/rdf+xml`) and URI-typed items. `None` when an entry cannot be read.
fn heif_metadata_items(d: &[u8], body: Range<usize>) -> Option<HashSet<u32>> {
    let version = *d.get(body.start)?;
    let first = body.start + 4 + if version == 0 { 2 } else { 4 };
    let mut items = HashSet::new();
    for entry in iso_boxes(d, first..body.end)? {
        if &entry.kind != b"infe" {
            continue;
        }
        let e = d.get(entry.body.clone())?;
        // Item info entries before version 2 have no item type: an old layout, refused.
        let (id, kind) = match e.first()? {
            2 => (
                u32::from(u16::from_be_bytes(e.get(4..6)?.try_into().ok()?)),
                e.get(8..12)?,
            ),
            3 => (
                u32::from_be_bytes(e.get(4..8)?.try_into().ok()?),
                e.get(10..14)?,
            ),
            _ => return None,
        };
        if matches!(kind, b"Exif" | b"mime" | b"uri ") {
            items.insert(id);
        }
    }
    Some(items)
}

/// Where one item's bytes are (ISO/IEC 14496-12 `iloc`).
struct Location {
    item: u32,
    method: u8,
    data_reference: u16,
    base: u64,
    extents: Vec<(u64, u64)>,
}

fn heif_locations(d: &[u8], body: Range<usize>) -> Option<Vec<Location>> {
    let b = d.get(body)?;
    let mut i = 0;
    let mut read = |n: usize| -> Option<u64> {
        let bytes = b.get(i..i + n)?;
        i += n;
        Some(bytes.iter().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    let version = read(1)?;
    read(3)?;
    let sizes = read(1)?;
    let (offset_size, length_size) = ((sizes >> 4) as usize, (sizes & 15) as usize);
    let sizes = read(1)?;
    let base_size = (sizes >> 4) as usize;
    let index_size = if version >= 1 {
        (sizes & 15) as usize
    } else {
        0
    };
    if [offset_size, length_size, base_size, index_size]
        .iter()
        .any(|s| ![0, 4, 8].contains(s))
    {
        return None;
    }
    let count = read(if version < 2 { 2 } else { 4 })?;
    let mut out = Vec::new();
    for _ in 0..count {
        let item = read(if version < 2 { 2 } else { 4 })? as u32;
        let method = if version >= 1 {
            (read(2)? & 15) as u8
        } else {
            0
        };
        let data_reference = read(2)? as u16;
        let base = read(base_size)?;
        let extent_count = read(2)?;
        let mut extents = Vec::new();
        for _ in 0..extent_count {
            read(index_size)?;
            extents.push((read(offset_size)?, read(length_size)?));
        }
        out.push(Location {
            item,
            method,
            data_reference,
            base,
            extents,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{clean, Cleaned};

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + 2) as u16;
        let mut s = vec![0xFF, marker];
        s.extend(len.to_be_bytes());
        s.extend(payload);
        s
    }

    fn cleaned(mime: &str, data: &[u8]) -> Vec<u8> {
        match clean(mime, data) {
            Cleaned::Clean(bytes) => bytes,
            other => panic!("{mime}: {other:?}"),
        }
    }

    #[test]
    fn gps_and_camera_data_leave_jpeg_pixels_stay() {
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        jpeg.extend(segment(
            0xE1,
            b"Exif\0\0MM\0*GPSLatitude 59.3293 N GPSLongitude 18.0686 E",
        ));
        jpeg.extend(segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS</x:xmpmeta>",
        ));
        jpeg.extend(segment(0xFE, b"taken at Storgatan 4"));
        jpeg.extend(segment(0xDB, &[0u8; 65]));
        jpeg.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        jpeg.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0x78]);
        // A second scan with a segment before it, then the end and an appended picture.
        jpeg.extend(segment(0xED, b"Photoshop 3.0\08BIM IPTC Storgatan"));
        jpeg.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        jpeg.extend([0x9A, 0xFF, 0xD9]);
        jpeg.extend([0xFF, 0xD8]);
        jpeg.extend(segment(0xE1, b"Exif\0\0MM\0*GPSLatitude 59.3293 N"));
        jpeg.extend([0xFF, 0xD9]);
        let out = cleaned("image/jpeg", &jpeg);
        let text = String::from_utf8_lossy(&out);
        for gone in ["Exif", "GPS", "59.3293", "xmpmeta", "Storgatan"] {
            assert!(!text.contains(gone), "{gone} is still in the image");
        }
        assert!(out.starts_with(&[0xFF, 0xD8]));
        assert!(text.contains("JFIF"));
        assert!(
            out.ends_with(
                &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0x78, 0xFF, 0xDA]
                    .iter()
                    .chain(&[0, 8, 1, 1, 0, 0, 63, 0, 0x9A, 0xFF, 0xD9])
                    .copied()
                    .collect::<Vec<_>>()
            ),
            "scan data kept, nothing after the end"
        );
        // The type is the bytes', whatever the sender said.
        assert_eq!(cleaned("application/octet-stream", &jpeg), out);
        assert_eq!(cleaned("image/gif", &jpeg), out);
        assert!(matches!(
            clean("image/jpeg", b"not a jpeg"),
            Cleaned::Withheld { .. }
        ));
        assert_eq!(
            clean("application/pdf", b"%PDF-1.4 beslut"),
            Cleaned::Unchanged
        );
    }

    #[test]
    fn damaged_or_unknown_images_are_withheld() {
        let mut truncated = vec![0xFF, 0xD8];
        truncated.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        truncated.extend(&segment(0xE1, b"Exif\0\0MM\0*GPS")[..8]);
        for (mime, data) in [
            ("image/jpeg", &truncated[..]),
            ("image/svg+xml", b"<svg><metadata>GPS</metadata></svg>"),
            ("application/octet-stream", b"\0\0\0\x0cJXL \r\n\x87\n...."),
            ("image/png", b"\x89PNG\r\n\x1a\n"),
        ] {
            assert!(
                matches!(clean(mime, data), Cleaned::Withheld { .. }),
                "{mime}"
            );
        }
    }
}
