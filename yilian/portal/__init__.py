"""The resident portal (居民端): a resident signs in with phone number, ID number and a one-time
code, sees their own record summary, referral status and who has read their record."""
