//! FHIR `date` values (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) as the range of days they cover.
//! Pure.

use jiff::civil::Date;

/// The days a FHIR date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) covers: its first day and the
/// first day after it. `None` when it is not such a date (or not a real one).
pub fn date_range(text: &str) -> Option<(Date, Date)> {
    let number = |s: &str| -> Option<i16> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let parts: Vec<&str> = text.split('-').collect();
    let year = number(parts.first().filter(|y| y.len() == 4)?)?;
    if year < 1 {
        return None;
    }
    let two = |i: usize| -> Option<i8> {
        let part = parts.get(i).filter(|p| p.len() == 2)?;
        i8::try_from(number(part)?).ok()
    };
    match parts.len() {
        1 => Some((
            Date::new(year, 1, 1).ok()?,
            Date::new(year.checked_add(1)?, 1, 1).ok()?,
        )),
        2 => {
            let first = Date::new(year, two(1)?, 1).ok()?;
            Some((first, first.last_of_month().tomorrow().ok()?))
        }
        3 => {
            let first = Date::new(year, two(1)?, two(2)?).ok()?;
            Some((first, first.tomorrow().ok()?))
        }
        _ => None,
    }
}
